"""Console product ``tenant``: list, search, pages, read, create, rename, delete and the errors."""

from __future__ import annotations

import uuid

import pytest

from better_console.exceptions import ConsoleError
from better_console.registry import get_product
from better_core.durations import iso_millis
from better_tenant import api, run_as, run_as_system
from better_tenant.models import Tenant
from tests.console.products_support import call, ok
from tests.testapp.models import Note

pytestmark = pytest.mark.django_db


def listed(**query) -> list[dict]:
    body = ok(call("tenant", "GET", "/tenants", query=query))
    assert isinstance(body, list)
    return body


def refused(method: str, path: str, **kwargs) -> ConsoleError:
    with pytest.raises(ConsoleError) as info:
        call("tenant", method, path, **kwargs)
    return info.value


def many_tenants(count: int) -> list[str]:
    """``count`` tenants written at once; their ids in list order (created_at, then id)."""
    with run_as_system():
        Tenant.objects.bulk_create(
            Tenant(name=f"Tenant {n}", slug=f"tenant-{n}") for n in range(count)
        )
        return [
            str(pk)
            for pk in Tenant.objects.order_by("created_at", "id").values_list("pk", flat=True)
        ]


def test_the_product_declares_each_route_with_its_permission():
    product = get_product("tenant")
    assert product.name == "Tenants"
    assert {(e.method, e.path, e.required_permission) for e in product.endpoints} == {
        ("GET", "/tenants", "read"),
        ("GET", "/tenants/:id", "read"),
        ("POST", "/tenants", "write"),
        ("PATCH", "/tenants/:id", "write"),
        ("DELETE", "/tenants/:id", "admin"),
        ("GET", "/stats", "read"),
    }


def test_ready_registers_again_without_complaint():
    from django.apps import apps

    apps.get_app_config("better_tenant").ready()
    assert get_product("tenant").endpoints[0].path == "/tenants"


def test_list_is_a_bare_array_oldest_first_in_camel_case():
    acme = api.create_tenant("Acme Corp", "acme")
    api.create_tenant("Globex", "globex")
    body = listed()
    assert [t["slug"] for t in body] == ["acme", "globex"]
    assert body[0] == {
        "id": str(acme.pk),
        "name": "Acme Corp",
        "slug": "acme",
        "createdAt": iso_millis(acme.created_at),
    }
    # As JavaScript's Date.toISOString() writes it: UTC, milliseconds, a Z.
    assert body[0]["createdAt"].endswith("Z") and len(body[0]["createdAt"]) == 24


def test_an_empty_list_is_an_empty_array():
    assert listed() == []


def test_search_matches_name_or_slug_in_any_case():
    api.create_tenant("Acme Corp", "acme")
    api.create_tenant("Globex", "initech-old")
    api.create_tenant("Umbrella", "umbrella")
    assert [t["slug"] for t in listed(search="ACME")] == ["acme"]
    assert [t["name"] for t in listed(search="initech")] == ["Globex"]
    # A LIKE wildcard in the search is a plain character.
    assert listed(search="%") == []


def test_limit_and_offset_page_through_without_gaps_or_repeats():
    slugs = [f"t{n}" for n in range(5)]
    for slug in slugs:
        api.create_tenant(slug.upper(), slug)
    pages = [[t["slug"] for t in listed(limit=2, offset=offset)] for offset in (0, 2, 4, 6)]
    assert pages == [["t0", "t1"], ["t2", "t3"], ["t4"], []]
    assert [t["slug"] for t in listed(limit=3, offset=1)] == ["t1", "t2", "t3"]


def test_search_pages_over_the_matches_only():
    for n in range(4):
        api.create_tenant(f"Match {n}", f"match-{n}")
        api.create_tenant(f"Other {n}", f"other-{n}")
    assert [t["slug"] for t in listed(search="match", limit=2, offset=2)] == ["match-2", "match-3"]


def test_the_default_page_is_fifty_and_a_larger_limit_is_capped_at_a_thousand():
    ids = many_tenants(1003)
    assert [t["id"] for t in listed()] == ids[:50]
    capped = listed(limit=5000)
    assert [t["id"] for t in capped] == ids[:1000]
    assert [t["id"] for t in listed(limit=1000, offset=1000)] == ids[1000:]


@pytest.mark.parametrize(
    ("limit", "size"),
    [("2.9", 2), ("1e1", 10), ("0x3", 3), (" 4 ", 4)],
)
def test_a_limit_is_read_as_a_number_and_floored(limit, size):
    many_tenants(12)
    assert len(listed(limit=limit)) == size


def test_an_offset_past_the_end_is_an_empty_page():
    api.create_tenant("Acme Corp", "acme")
    assert listed(offset="1") == []
    assert listed(offset="99999999999999999999") == []
    assert [t["slug"] for t in listed(offset="0.5")] == ["acme"]


@pytest.mark.parametrize(
    ("query", "code", "message"),
    [
        ({"limit": "0"}, "INVALID_LIMIT", "Invalid 'limit': must be a positive integer (max 1000)"),
        (
            {"limit": "-5"},
            "INVALID_LIMIT",
            "Invalid 'limit': must be a positive integer (max 1000)",
        ),
        (
            {"limit": "ten"},
            "INVALID_LIMIT",
            "Invalid 'limit': must be a positive integer (max 1000)",
        ),
        ({"limit": ""}, "INVALID_LIMIT", "Invalid 'limit': must be a positive integer (max 1000)"),
        (
            {"limit": "inf"},
            "INVALID_LIMIT",
            "Invalid 'limit': must be a positive integer (max 1000)",
        ),
        ({"offset": "-1"}, "INVALID_OFFSET", "Invalid 'offset': must be a non-negative integer"),
        ({"offset": "two"}, "INVALID_OFFSET", "Invalid 'offset': must be a non-negative integer"),
        ({"offset": "nan"}, "INVALID_OFFSET", "Invalid 'offset': must be a non-negative integer"),
    ],
)
def test_bad_paging_input_is_a_400(query, code, message):
    error = refused("GET", "/tenants", query=query)
    assert (error.status, error.code, error.error) == (400, code, message)


def test_stats_count_every_tenant():
    assert ok(call("tenant", "GET", "/stats")) == {"tenantCount": 0}
    many_tenants(3)
    api.create_tenant("Acme Corp", "acme")
    assert ok(call("tenant", "GET", "/stats")) == {"tenantCount": 4}


def test_read_one_tenant_and_the_errors_for_bad_and_unknown_ids():
    acme = api.create_tenant("Acme Corp", "acme")
    body = ok(call("tenant", "GET", f"/tenants/{acme.pk}"))
    assert body == {
        "id": str(acme.pk),
        "name": "Acme Corp",
        "slug": "acme",
        "createdAt": iso_millis(acme.created_at),
    }
    error = refused("GET", "/tenants/acme")
    assert (error.status, error.code) == (400, "INVALID_ID")
    error = refused("GET", f"/tenants/{uuid.uuid4()}")
    assert (error.status, error.code, error.error) == (404, "TENANT_NOT_FOUND", "Tenant not found")
    assert error.body() == {"error": "Tenant not found", "code": "TENANT_NOT_FOUND"}


def test_create_stores_the_tenant():
    body = ok(call("tenant", "POST", "/tenants", body={"name": "Acme Corp", "slug": "acme"}), 201)
    with run_as_system():
        tenant = Tenant.objects.get(pk=body["id"])
    assert (tenant.name, tenant.slug) == ("Acme Corp", "acme")
    assert body == {
        "id": str(tenant.pk),
        "name": "Acme Corp",
        "slug": "acme",
        "createdAt": iso_millis(tenant.created_at),
    }


def test_create_ignores_unknown_fields():
    body = {"name": "Globex", "slug": "globex", "plan": "pro", "id": str(uuid.uuid4())}
    created = ok(call("tenant", "POST", "/tenants", body=body), 201)
    assert created["id"] != body["id"]
    assert set(created) == {"id", "name", "slug", "createdAt"}
    with run_as_system():
        assert Tenant.objects.get(pk=created["id"]).slug == "globex"


@pytest.mark.parametrize(
    ("body", "status", "code", "message"),
    [
        ({"name": "Acme"}, 400, "INVALID_BODY", "name and slug are required"),
        ({"slug": "acme"}, 400, "INVALID_BODY", "name and slug are required"),
        ({"name": "", "slug": "acme"}, 400, "INVALID_BODY", "name and slug are required"),
        ({"name": "Acme", "slug": "   "}, 400, "INVALID_BODY", "name and slug are required"),
        ({"name": "Acme", "slug": 7}, 400, "INVALID_BODY", "name and slug are required"),
        (
            {"name": "x" * 256, "slug": "acme"},
            400,
            "INVALID_BODY",
            "name and slug must not exceed 255 characters",
        ),
        ({"name": "Acme", "slug": "Not A Slug"}, 400, "INVALID_TENANT_SLUG", None),
        ({"name": "Acme", "slug": "a" * 64}, 400, "INVALID_TENANT_SLUG", None),
        (["Acme"], 400, "INVALID_BODY", "Request body is required"),
        ("Acme", 400, "INVALID_BODY", "Request body is required"),
        (None, 400, "INVALID_BODY", "Request body is required"),
        ({"name": "Taken", "slug": "taken"}, 409, "DUPLICATE_TENANT_SLUG", None),
    ],
)
def test_create_refuses_bad_input_and_writes_nothing(body, status, code, message):
    api.create_tenant("Taken", "taken")
    error = refused("POST", "/tenants", body=body)
    assert (error.status, error.code) == (status, code)
    assert error.error
    if message is not None:
        assert error.error == message
    with run_as_system():
        assert list(Tenant.objects.values_list("slug", flat=True)) == ["taken"]


def test_patch_renames_and_changes_the_slug():
    acme = api.create_tenant("Acme Corp", "acme")
    body = ok(call("tenant", "PATCH", f"/tenants/{acme.pk}", body={"name": "Acme Inc"}))
    assert (body["name"], body["slug"]) == ("Acme Inc", "acme")
    body = ok(call("tenant", "PATCH", f"/tenants/{acme.pk}", body={"slug": "acme-inc", "x": 1}))
    assert (body["name"], body["slug"]) == ("Acme Inc", "acme-inc")
    with run_as_system():
        acme.refresh_from_db()
    assert (acme.name, acme.slug) == ("Acme Inc", "acme-inc")


def test_patch_without_a_change_answers_the_tenant_as_it_is():
    acme = api.create_tenant("Acme Corp", "acme")
    body = ok(call("tenant", "PATCH", f"/tenants/{acme.pk}", body={"name": 7, "plan": "pro"}))
    assert (body["id"], body["name"], body["slug"]) == (str(acme.pk), "Acme Corp", "acme")


def test_patch_errors():
    acme = api.create_tenant("Acme Corp", "acme")
    api.create_tenant("Globex", "globex")
    error = refused("PATCH", f"/tenants/{acme.pk}", body={"slug": "globex"})
    assert (error.status, error.code) == (409, "DUPLICATE_TENANT_SLUG")
    error = refused("PATCH", f"/tenants/{acme.pk}", body={"slug": "Not A Slug"})
    assert (error.status, error.code) == (400, "INVALID_TENANT_SLUG")
    error = refused("PATCH", f"/tenants/{acme.pk}", body={"name": "  "})
    assert (error.status, error.code) == (400, "INVALID_TENANT_NAME")
    error = refused("PATCH", f"/tenants/{acme.pk}", body={"name": "x" * 256})
    assert (error.status, error.error) == (400, "name must not exceed 255 characters")
    error = refused("PATCH", f"/tenants/{acme.pk}", body=["Acme"])
    assert (error.status, error.error) == (400, "Request body is required")
    for body in ({"name": "Nobody"}, {}):
        error = refused("PATCH", f"/tenants/{uuid.uuid4()}", body=body)
        assert (error.status, error.code) == (404, "TENANT_NOT_FOUND")
    error = refused("PATCH", "/tenants/acme", body={"name": "Acme"})
    assert (error.status, error.code) == (400, "INVALID_ID")
    with run_as_system():
        acme.refresh_from_db()
    assert (acme.name, acme.slug) == ("Acme Corp", "acme")


def test_delete_removes_the_tenant_and_its_rows_only():
    acme = api.create_tenant("Acme Corp", "acme")
    globex = api.create_tenant("Globex", "globex")
    with run_as(acme):
        Note.objects.create(title="acme note")
    with run_as(globex):
        Note.objects.create(title="globex note")
    response = call("tenant", "DELETE", f"/tenants/{acme.pk}")
    assert ok(response, 204) is None
    with run_as_system():
        assert list(Tenant.objects.values_list("slug", flat=True)) == ["globex"]
    with run_as(globex):
        assert list(Note.objects.values_list("title", flat=True)) == ["globex note"]


def test_delete_is_idempotent_for_an_unknown_tenant():
    acme = api.create_tenant("Acme Corp", "acme")
    assert ok(call("tenant", "DELETE", f"/tenants/{uuid.uuid4()}"), 204) is None
    assert ok(call("tenant", "DELETE", f"/tenants/{acme.pk}"), 204) is None
    assert ok(call("tenant", "DELETE", f"/tenants/{acme.pk}"), 204) is None
    with run_as_system():
        assert not Tenant.objects.exists()
    error = refused("DELETE", "/tenants/acme")
    assert (error.status, error.code) == (400, "INVALID_ID")
