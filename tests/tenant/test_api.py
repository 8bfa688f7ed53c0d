"""better_tenant.api: tenant CRUD in system mode with clear errors."""

import uuid

import pytest

from better_tenant import api, run_as, run_as_system
from better_tenant.exceptions import DuplicateTenantSlug, InvalidTenantSlug, TenantNotFound
from better_tenant.lookup import resolve_to_id
from better_tenant.models import Tenant
from tests.testapp.models import Note

pytestmark = pytest.mark.django_db


def test_create_derives_the_slug_and_lists_in_creation_order():
    first = api.create_tenant("Acme Corp")
    second = api.create_tenant("Globex", "globex")
    assert first.slug == "acme-corp"
    assert [t.slug for t in api.list_tenants()] == ["acme-corp", "globex"]
    assert [t.slug for t in api.list_tenants(limit=1, offset=1)] == ["globex"]
    assert api.get_tenant_by_slug("globex") == second


@pytest.mark.parametrize("slug", ["Acme", "-acme", "acme-", "a--b", "a b", "", "x" * 64, "ün"])
def test_bad_slugs_are_refused_with_the_rule(slug):
    with pytest.raises(InvalidTenantSlug, match="lowercase letters, digits and single hyphens"):
        api.create_tenant("Name", slug)
    with run_as_system():
        assert not Tenant.objects.exists()


def test_duplicate_slug_is_a_clear_error_and_keeps_the_first():
    api.create_tenant("Acme", "acme")
    with pytest.raises(DuplicateTenantSlug, match="'acme' already exists"):
        api.create_tenant("Other Acme", "acme")
    assert api.get_tenant_by_slug("acme").name == "Acme"


def test_list_limits_are_validated():
    with pytest.raises(ValueError, match="limit must be an integer from 1 to 1000"):
        api.list_tenants(limit=0)
    with pytest.raises(ValueError, match="offset"):
        api.list_tenants(offset=-1)


def test_update_renames_and_changes_slug_and_invalidates_the_cache():
    tenant = api.create_tenant("Acme", "acme")
    assert resolve_to_id("acme") == tenant.pk
    api.update_tenant(tenant.pk, name="Acme Inc", slug="acme-inc")
    tenant = api.get_tenant(tenant.pk)
    assert (tenant.name, tenant.slug) == ("Acme Inc", "acme-inc")
    assert resolve_to_id("acme") is None
    assert resolve_to_id("acme-inc") == tenant.pk


def test_update_to_a_taken_slug_is_refused():
    api.create_tenant("Acme", "acme")
    other = api.create_tenant("Globex", "globex")
    with pytest.raises(DuplicateTenantSlug):
        api.update_tenant(other.pk, slug="acme")


def test_delete_removes_the_tenant_and_its_rows():
    tenant = api.create_tenant("Acme", "acme")
    with run_as(tenant):
        Note.objects.create(title="n")
    api.delete_tenant(tenant.pk)
    with run_as_system():
        assert not Tenant.objects.filter(pk=tenant.pk).exists()
        assert not Note.objects.filter(tenant_id=tenant.pk).exists()
    assert resolve_to_id(str(tenant.pk)) is None
    with pytest.raises(TenantNotFound, match="No tenant has the id"):
        api.delete_tenant(tenant.pk)


def test_unknown_ids_and_slugs():
    assert api.get_tenant_by_slug("nope") is None
    assert api.get_tenant_by_slug("'; DROP TABLE tenants; --") is None
    with pytest.raises(TenantNotFound):
        api.update_tenant(uuid.uuid4(), name="x")


def test_fixtures_create_distinct_tenants(tenant, other_tenant, as_tenant, as_system):
    assert tenant.pk != other_tenant.pk
    with as_tenant(tenant):
        Note.objects.create(title="t")
    with as_system():
        assert Note.objects.count() == 1
