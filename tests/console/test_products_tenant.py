"""Console product ``tenant``: list, search, pages, read, create, rename, delete and the errors."""

from __future__ import annotations

import uuid

import pytest

from better_console.exceptions import ConsoleError
from better_console.registry import get_product
from better_tenant import api, run_as
from better_tenant.models import Tenant
from tests.console.products_support import call, ok
from tests.testapp.models import Note

pytestmark = pytest.mark.django_db


def test_the_product_declares_each_route_with_its_permission():
    product = get_product("tenant")
    assert product.name == "Tenants"
    assert {(e.method, e.path, e.required_permission) for e in product.endpoints} == {
        ("GET", "/tenants", "read"),
        ("GET", "/tenants/:id", "read"),
        ("POST", "/tenants", "write"),
        ("PATCH", "/tenants/:id", "write"),
        ("DELETE", "/tenants/:id", "admin"),
    }


def test_ready_registers_again_without_complaint():
    from django.apps import apps

    apps.get_app_config("better_tenant").ready()
    assert get_product("tenant").endpoints[0].path == "/tenants"


def test_list_shows_tenants_oldest_first_in_camel_case():
    acme = api.create_tenant("Acme Corp", "acme")
    globex = api.create_tenant("Globex", "globex")
    body = ok(call("tenant", "GET", "/tenants"))
    assert [t["slug"] for t in body["data"]] == ["acme", "globex"]
    assert body["data"][0] == {
        "id": str(acme.pk),
        "name": "Acme Corp",
        "slug": "acme",
        "createdAt": acme.created_at.isoformat(),
    }
    assert body["nextCursor"] is None
    assert globex.pk != acme.pk


def test_search_matches_name_or_slug_in_any_case():
    api.create_tenant("Acme Corp", "acme")
    api.create_tenant("Globex", "initech-old")
    api.create_tenant("Umbrella", "umbrella")
    found = ok(call("tenant", "GET", "/tenants", query={"search": "ACME"}))["data"]
    assert [t["slug"] for t in found] == ["acme"]
    found = ok(call("tenant", "GET", "/tenants", query={"search": "initech"}))["data"]
    assert [t["name"] for t in found] == ["Globex"]


def test_pages_follow_the_cursor_without_gaps_or_repeats():
    slugs = [f"t{n}" for n in range(5)]
    for slug in slugs:
        api.create_tenant(slug.upper(), slug)
    seen, cursor = [], None
    while True:
        query = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        body = ok(call("tenant", "GET", "/tenants", query=query))
        assert len(body["data"]) <= 2
        seen += [t["slug"] for t in body["data"]]
        cursor = body["nextCursor"]
        if cursor is None:
            break
    assert seen == slugs


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"limit": "0"}, "INVALID_LIMIT"),
        ({"limit": "201"}, "INVALID_LIMIT"),
        ({"limit": "ten"}, "INVALID_LIMIT"),
        ({"cursor": "not-a-cursor"}, "INVALID_CURSOR"),
    ],
)
def test_bad_paging_input_is_a_400(query, code):
    with pytest.raises(ConsoleError) as info:
        call("tenant", "GET", "/tenants", query=query)
    assert (info.value.status, info.value.code) == (400, code)


def test_read_one_tenant_and_the_errors_for_bad_and_unknown_ids():
    acme = api.create_tenant("Acme Corp", "acme")
    assert ok(call("tenant", "GET", f"/tenants/{acme.pk}"))["slug"] == "acme"
    with pytest.raises(ConsoleError) as info:
        call("tenant", "GET", "/tenants/acme")
    assert (info.value.status, info.value.code) == (400, "INVALID_ID")
    with pytest.raises(ConsoleError) as info:
        call("tenant", "GET", f"/tenants/{uuid.uuid4()}")
    assert (info.value.status, info.value.code) == (404, "TENANT_NOT_FOUND")


def test_create_stores_the_tenant_and_defaults_the_slug():
    body = ok(call("tenant", "POST", "/tenants", body={"name": "Acme Corp"}), 201)
    tenant = Tenant.objects.get(pk=body["id"])
    assert (tenant.name, tenant.slug) == ("Acme Corp", "acme-corp")
    assert body["slug"] == "acme-corp"
    body = ok(call("tenant", "POST", "/tenants", body={"name": "Globex", "slug": "gx"}), 201)
    assert Tenant.objects.get(pk=body["id"]).slug == "gx"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"name": "Acme", "slug": "Not A Slug"}, 400, "INVALID_TENANT_SLUG"),
        ({"name": "Acme", "slug": 7}, 400, "INVALID_TENANT_SLUG"),
        ({"name": ""}, 400, "INVALID_TENANT_NAME"),
        ({"name": "x" * 256}, 400, "INVALID_TENANT_NAME"),
        ({"slug": "acme"}, 400, "INVALID_TENANT_NAME"),
        ({"name": "Acme", "plan": "pro"}, 400, "INVALID_BODY"),
        (["Acme"], 400, "INVALID_BODY"),
        (None, 400, "INVALID_BODY"),
        ({"name": "Taken", "slug": "taken"}, 409, "DUPLICATE_TENANT_SLUG"),
    ],
)
def test_create_refuses_bad_input_and_writes_nothing(body, status, code):
    api.create_tenant("Taken", "taken")
    with pytest.raises(ConsoleError) as info:
        call("tenant", "POST", "/tenants", body=body)
    assert (info.value.status, info.value.code) == (status, code)
    assert info.value.error
    assert list(Tenant.objects.values_list("slug", flat=True)) == ["taken"]


def test_patch_renames_and_changes_the_slug():
    acme = api.create_tenant("Acme Corp", "acme")
    body = ok(call("tenant", "PATCH", f"/tenants/{acme.pk}", body={"name": "Acme Inc"}))
    assert (body["name"], body["slug"]) == ("Acme Inc", "acme")
    ok(call("tenant", "PATCH", f"/tenants/{acme.pk}", body={"slug": "acme-inc"}))
    acme.refresh_from_db()
    assert (acme.name, acme.slug) == ("Acme Inc", "acme-inc")


def test_patch_errors():
    acme = api.create_tenant("Acme Corp", "acme")
    api.create_tenant("Globex", "globex")
    with pytest.raises(ConsoleError) as info:
        call("tenant", "PATCH", f"/tenants/{acme.pk}", body={"slug": "globex"})
    assert (info.value.status, info.value.code) == (409, "DUPLICATE_TENANT_SLUG")
    with pytest.raises(ConsoleError) as info:
        call("tenant", "PATCH", f"/tenants/{uuid.uuid4()}", body={"name": "Nobody"})
    assert (info.value.status, info.value.code) == (404, "TENANT_NOT_FOUND")
    acme.refresh_from_db()
    assert acme.slug == "acme"


def test_delete_removes_the_tenant_and_its_rows_only():
    acme = api.create_tenant("Acme Corp", "acme")
    globex = api.create_tenant("Globex", "globex")
    with run_as(acme):
        Note.objects.create(title="acme note")
    with run_as(globex):
        Note.objects.create(title="globex note")
    response = call("tenant", "DELETE", f"/tenants/{acme.pk}")
    assert ok(response, 204) is None
    assert list(Tenant.objects.values_list("slug", flat=True)) == ["globex"]
    with run_as(globex):
        assert list(Note.objects.values_list("title", flat=True)) == ["globex note"]
    with pytest.raises(ConsoleError) as info:
        call("tenant", "DELETE", f"/tenants/{acme.pk}")
    assert info.value.status == 404
