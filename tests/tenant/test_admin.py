"""The tenants admin: every view in system mode, the API's slug rule."""

import pytest
from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.urls import reverse

from better_tenant import run_as, run_as_system
from better_tenant.admin import TenantAdmin
from better_tenant.api import create_tenant
from better_tenant.models import Tenant
from tests.testapp.models import Note

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:better_tenant_tenant_changelist")
ADD = reverse("admin:better_tenant_tenant_add")


def change_url(tenant):
    return reverse("admin:better_tenant_tenant_change", args=[tenant.pk])


def delete_url(tenant):
    return reverse("admin:better_tenant_tenant_delete", args=[tenant.pk])


def test_tenant_is_registered_with_the_listed_columns():
    model_admin = admin.site._registry[Tenant]
    assert isinstance(model_admin, TenantAdmin)
    assert model_admin.list_display == ("name", "slug", "created_at")
    assert model_admin.prepopulated_fields == {"slug": ("name",)}


def test_changelist_lists_and_searches_tenants(admin_client):
    create_tenant("Acme Corp", "acme")
    create_tenant("Globex", "globex")
    page = admin_client.get(CHANGELIST).content.decode()
    assert "Acme Corp" in page and "Globex" in page
    found = admin_client.get(CHANGELIST, {"q": "glob"}).content.decode()
    assert "Globex" in found and "Acme Corp" not in found


def test_add_creates_the_tenant_in_system_mode(admin_client):
    response = admin_client.post(ADD, {"name": "  Initech  ", "slug": "initech"})
    assert response.status_code == 302
    with run_as_system():  # a tenant scope, or none, would not see the row
        tenant = Tenant.objects.get(slug="initech")
    assert tenant.name == "Initech"
    assert tenant.created_at is not None
    assert LogEntry.objects.filter(object_id=str(tenant.pk)).exists()


@pytest.mark.parametrize("slug", ["Not OK", "-acme", "acme--corp", "ACME"])
def test_add_rejects_slugs_the_api_rejects(admin_client, slug):
    response = admin_client.post(ADD, {"name": "Acme", "slug": slug})
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["slug"]
    with run_as_system():
        assert not Tenant.objects.exists()


def test_slug_errors_explain_the_rule(admin_client):
    response = admin_client.post(ADD, {"name": "Acme", "slug": "acme--corp"})
    assert "is not a valid tenant slug" in response.content.decode()


def test_add_rejects_a_duplicate_slug(admin_client):
    create_tenant("Acme", "acme")
    response = admin_client.post(ADD, {"name": "Acme 2", "slug": "acme"})
    assert response.status_code == 200
    assert "already exists" in response.content.decode()
    with run_as_system():
        assert Tenant.objects.filter(slug="acme").count() == 1


def test_change_renames_the_tenant(admin_client):
    tenant = create_tenant("Acme", "acme")
    page = admin_client.get(change_url(tenant)).content.decode()
    assert str(tenant.pk) in page  # the id is shown read-only
    response = admin_client.post(change_url(tenant), {"name": "Acme Inc", "slug": "acme-inc"})
    assert response.status_code == 302
    with run_as_system():
        tenant.refresh_from_db()
    assert (tenant.name, tenant.slug) == ("Acme Inc", "acme-inc")


def test_delete_removes_the_tenant_and_only_its_rows(admin_client):
    doomed, kept = create_tenant("Doomed", "doomed"), create_tenant("Kept", "kept")
    with run_as(doomed):
        Note.objects.create(title="doomed note")
    with run_as(kept):
        Note.objects.create(title="kept note")

    confirm = admin_client.get(delete_url(doomed)).content.decode()
    # The confirmation lists the rows the cascade removes, which RLS would otherwise hide.
    assert "Note" in confirm and "Summary" in confirm

    response = admin_client.post(delete_url(doomed), {"post": "yes"})
    assert response.status_code == 302
    with run_as_system():
        assert list(Tenant.objects.values_list("slug", flat=True)) == ["kept"]
        assert list(Note.objects.values_list("title", flat=True)) == ["kept note"]


def test_bulk_delete_action_runs_in_system_mode(admin_client):
    first, second = create_tenant("One", "one"), create_tenant("Two", "two")
    response = admin_client.post(
        CHANGELIST,
        {"action": "delete_selected", "_selected_action": [first.pk, second.pk], "post": "yes"},
    )
    assert response.status_code == 302
    with run_as_system():
        assert not Tenant.objects.exists()


def test_tenants_cannot_be_written_outside_system_mode():
    # What the admin's run_as_system() wrappers are for: the app role alone may not write.
    from django.db import DatabaseError, transaction

    with pytest.raises(DatabaseError), transaction.atomic():
        Tenant.objects.create(name="Sneaky", slug="sneaky")
