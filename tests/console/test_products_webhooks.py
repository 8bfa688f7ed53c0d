"""Console product ``webhooks``: catalog, endpoints without secrets, deliveries, retry."""

from __future__ import annotations

import uuid

import pytest
from django.utils import timezone

from better_console.exceptions import ConsoleError
from better_console.registry import get_product
from better_tenant import run_as, run_as_system
from better_webhooks import crypto
from better_webhooks.endpoints import create_endpoint
from better_webhooks.events import register_event, unregister_event
from better_webhooks.models import WebhookDelivery, WebhookDeliveryAttempt, WebhookEndpoint
from better_webhooks.sending import send
from tests.console.products_support import call, ok

pytestmark = pytest.mark.django_db

ORDER_SCHEMA = {
    "type": "object",
    "properties": {"id": {"type": "string"}},
    "required": ["id"],
}


@pytest.fixture(autouse=True)
def catalog():
    register_event("order.created", "An order was placed.", ORDER_SCHEMA)
    register_event("order.paid", "An order was paid.")
    yield
    unregister_event("order.created")
    unregister_event("order.paid")


@pytest.fixture
def world(tenant, other_tenant):
    """Each tenant: an endpoint, a failed ``order.created`` delivery with two attempts and a
    delivered ``order.paid`` one; plus a platform endpoint (no tenant)."""
    made = {}
    for owner in (tenant, other_tenant):
        with run_as(owner):
            endpoint, _ = create_endpoint(f"https://{owner.slug}.example.com/h", ["*"])
            failed = send("order.created", {"id": f"{owner.slug}-1"})[0]
            delivered = send("order.paid", {"id": f"{owner.slug}-2"})[0]
            WebhookDelivery.objects.filter(pk=failed.pk).update(
                status="failed", attempts=2, max_attempts=2, last_error="HTTP 500"
            )
            WebhookDelivery.objects.filter(pk=delivered.pk).update(
                status="delivered", attempts=1, delivered_at=timezone.now()
            )
            for number, status in ((1, 500), (2, 502)):
                WebhookDeliveryAttempt.objects.create(
                    delivery=failed,
                    attempt=number,
                    url=endpoint.url,
                    response_status=status,
                    tenant_id=owner.pk,
                )
        made[owner.pk] = {"endpoint": endpoint, "failed": failed, "delivered": delivered}
    with run_as_system():
        made["platform"], _ = create_endpoint("https://platform.example.com/h", ["order.paid"])
    return made


def test_the_product_declares_each_route_with_its_permission():
    product = get_product("webhooks")
    assert {(e.method, e.path, e.required_permission) for e in product.endpoints} == {
        ("GET", "/events", "read"),
        ("GET", "/endpoints", "read"),
        ("GET", "/endpoints/:id", "read"),
        ("POST", "/endpoints", "write"),
        ("PATCH", "/endpoints/:id", "write"),
        ("DELETE", "/endpoints/:id", "admin"),
        ("GET", "/deliveries", "read"),
        ("GET", "/deliveries/:id", "read"),
        ("POST", "/deliveries/:id/retry", "write"),
    }


def test_events_list_the_catalog_with_schemas():
    data = ok(call("webhooks", "GET", "/events"))
    by_name = {event["name"]: event for event in data}
    assert by_name["order.created"] == {
        "name": "order.created",
        "description": "An order was placed.",
        "schema": ORDER_SCHEMA,
    }
    assert by_name["order.paid"]["schema"] == {"type": "object"}


def test_endpoints_of_every_tenant_without_secrets(world, tenant, other_tenant):
    body = ok(call("webhooks", "GET", "/endpoints"))
    assert {e["url"] for e in body["entries"]} == {
        f"https://{tenant.slug}.example.com/h",
        f"https://{other_tenant.slug}.example.com/h",
        "https://platform.example.com/h",
    }
    first = body["entries"][0]
    assert first["url"] == "https://platform.example.com/h"  # newest first
    assert first["tenantId"] is None and first["status"] == "active"
    assert "secret" not in first and "secrets" not in first
    assert body["hasNextPage"] is False and "nextCursor" not in body


def test_tenant_id_narrows_endpoints_to_that_tenant(world, tenant):
    data = ok(call("webhooks", "GET", "/endpoints", query={"tenantId": tenant.pk}))["entries"]
    assert [e["id"] for e in data] == [str(world[tenant.pk]["endpoint"].pk)]


def test_endpoint_pages(world):
    first = ok(call("webhooks", "GET", "/endpoints", query={"limit": 2}))
    assert len(first["entries"]) == 2 and first["hasNextPage"] and first["nextCursor"]
    rest = ok(
        call("webhooks", "GET", "/endpoints", query={"limit": 2, "cursor": first["nextCursor"]})
    )
    assert len(rest["entries"]) == 1 and not rest["hasNextPage"] and "nextCursor" not in rest
    ids = {e["id"] for e in first["entries"] + rest["entries"]}
    assert len(ids) == 3


def test_one_endpoint_and_the_errors(world, tenant, other_tenant):
    endpoint = world[tenant.pk]["endpoint"]
    body = ok(call("webhooks", "GET", f"/endpoints/{endpoint.pk}"))
    assert (body["id"], body["events"]) == (str(endpoint.pk), ["*"])
    assert "secret" not in body
    with pytest.raises(ConsoleError) as info:
        call("webhooks", "GET", f"/endpoints/{endpoint.pk}", query={"tenantId": other_tenant.pk})
    assert (info.value.status, info.value.code) == (404, "NOT_FOUND")
    with pytest.raises(ConsoleError) as info:
        call("webhooks", "GET", "/endpoints/nope")
    assert (info.value.status, info.value.code) == (400, "INVALID_ID")


def test_create_returns_the_secret_once_for_the_given_tenant(tenant):
    body = ok(
        call(
            "webhooks",
            "POST",
            "/endpoints",
            body={
                "url": "https://new.example.com/h",
                "events": ["order.created"],
                "description": "orders",
                "tenantId": str(tenant.pk),
            },
        ),
        201,
    )
    with run_as_system():
        endpoint = WebhookEndpoint.objects.get(pk=body["id"])
    assert endpoint.tenant_id == tenant.pk
    assert (endpoint.url, endpoint.events, endpoint.description) == (
        "https://new.example.com/h",
        ["order.created"],
        "orders",
    )
    # The secret shown is the one deliveries are signed with.
    assert body["secret"] in crypto.endpoint_secrets(endpoint)
    later = ok(call("webhooks", "GET", f"/endpoints/{body['id']}"))
    assert "secret" not in later


def test_create_without_tenant_makes_a_platform_endpoint():
    body = ok(
        call(
            "webhooks", "POST", "/endpoints", body={"url": "https://p.example.com", "events": ["*"]}
        ),
        201,
    )
    assert body["tenantId"] is None


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"url": "https://x.example.com", "events": ["nope.event"]}, "VALIDATION_ERROR"),
        ({"url": "ftp://x.example.com", "events": ["*"]}, "VALIDATION_ERROR"),
        ({"url": "https://x.example.com"}, "VALIDATION_ERROR"),
        ({"url": "https://x.example.com", "events": ["*"], "secret": "s"}, "INVALID_BODY"),
        ({"url": "https://x.example.com", "events": ["*"], "tenantId": "acme"}, "INVALID_ID"),
        (
            {"url": "https://x.example.com", "events": ["*"], "tenantId": str(uuid.uuid4())},
            "TENANT_NOT_FOUND",
        ),
    ],
)
def test_create_refuses_bad_input(body, code):
    with pytest.raises(ConsoleError) as info:
        call("webhooks", "POST", "/endpoints", body=body)
    assert (info.value.status, info.value.code) == (400, code)
    with run_as_system():
        assert not WebhookEndpoint.objects.exists()


def test_create_names_the_invalid_field(tenant):
    with pytest.raises(ConsoleError) as info:
        call("webhooks", "POST", "/endpoints", body={"url": "https://x.example.com", "events": []})
    assert "events" in info.value.error
    assert "events" in info.value.extra["details"]


def test_patch_changes_fields_and_status(world, tenant):
    endpoint = world[tenant.pk]["endpoint"]
    path = f"/endpoints/{endpoint.pk}"
    body = ok(
        call("webhooks", "PATCH", path, body={"events": ["order.paid"], "status": "disabled"})
    )
    assert (body["events"], body["status"]) == (["order.paid"], "disabled")
    with run_as_system():
        endpoint.refresh_from_db()
    assert endpoint.status == "disabled" and endpoint.disabled_reason
    assert endpoint.url == f"https://{tenant.slug}.example.com/h"  # untouched
    body = ok(call("webhooks", "PATCH", path, body={"status": "active"}))
    assert body["status"] == "active" and body["disabledReason"] == ""
    with pytest.raises(ConsoleError) as info:
        call("webhooks", "PATCH", path, body={"status": "paused"})
    assert info.value.status == 400
    with pytest.raises(ConsoleError) as info:
        call("webhooks", "PATCH", path, body={"url": "not a url"})
    assert info.value.status == 400
    with pytest.raises(ConsoleError) as info:
        call("webhooks", "PATCH", f"/endpoints/{uuid.uuid4()}", body={"description": "x"})
    assert info.value.status == 404


def test_delete_removes_the_endpoint_and_its_deliveries(world, tenant, other_tenant):
    endpoint = world[tenant.pk]["endpoint"]
    assert ok(call("webhooks", "DELETE", f"/endpoints/{endpoint.pk}"), 204) is None
    with run_as_system():
        assert not WebhookEndpoint.objects.filter(pk=endpoint.pk).exists()
        assert not WebhookDelivery.objects.filter(endpoint_id=endpoint.pk).exists()
        assert WebhookDelivery.objects.filter(tenant_id=other_tenant.pk).count() == 2


def test_deliveries_filters_and_tenant_narrowing(world, tenant, other_tenant):
    every = ok(call("webhooks", "GET", "/deliveries"))["entries"]
    assert len(every) == 4
    assert {d["eventName"] for d in every} == {"order.created", "order.paid"}
    failed = ok(call("webhooks", "GET", "/deliveries", query={"status": "failed"}))["entries"]
    assert {d["id"] for d in failed} == {
        str(world[tenant.pk]["failed"].pk),
        str(world[other_tenant.pk]["failed"].pk),
    }
    mine = ok(call("webhooks", "GET", "/deliveries", query={"tenantId": tenant.pk}))["entries"]
    assert {d["tenantId"] for d in mine} == {str(tenant.pk)} and len(mine) == 2
    by_event = ok(call("webhooks", "GET", "/deliveries", query={"eventType": "order.paid"}))[
        "entries"
    ]
    assert {d["eventName"] for d in by_event} == {"order.paid"} and len(by_event) == 2
    endpoint = world[other_tenant.pk]["endpoint"]
    by_endpoint = ok(call("webhooks", "GET", "/deliveries", query={"endpointId": endpoint.pk}))[
        "entries"
    ]
    assert {d["endpointId"] for d in by_endpoint} == {str(endpoint.pk)}


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"status": "lost"}, "INVALID_FILTER"),
        ({"endpointId": "x"}, "INVALID_ID"),
        ({"limit": "-1"}, "INVALID_LIMIT"),
        ({"cursor": "!!"}, "INVALID_CURSOR"),
    ],
)
def test_bad_delivery_filters_are_400s(query, code):
    with pytest.raises(ConsoleError) as info:
        call("webhooks", "GET", "/deliveries", query=query)
    assert (info.value.status, info.value.code) == (400, code)


def test_one_delivery_with_its_attempts(world, tenant, other_tenant):
    failed = world[tenant.pk]["failed"]
    body = ok(call("webhooks", "GET", f"/deliveries/{failed.pk}"))
    assert body["payload"] == {"id": f"{tenant.slug}-1"}
    assert [(a["attempt"], a["responseStatus"]) for a in body["attemptLog"]] == [
        (1, 500),
        (2, 502),
    ]
    with pytest.raises(ConsoleError) as info:
        call("webhooks", "GET", f"/deliveries/{failed.pk}", query={"tenantId": other_tenant.pk})
    assert info.value.status == 404


def test_retry_queues_a_failed_delivery_with_fresh_attempts(world, tenant):
    failed = world[tenant.pk]["failed"]
    body = ok(call("webhooks", "POST", f"/deliveries/{failed.pk}/retry"), 202)
    assert body["status"] == "pending"
    with run_as_system():
        failed.refresh_from_db()
    assert (failed.status, failed.attempts, failed.max_attempts) == ("pending", 2, 2 + 5)
    # Queued now: a second retry is refused until it is delivered or failed again.
    with pytest.raises(ConsoleError) as info:
        call("webhooks", "POST", f"/deliveries/{failed.pk}/retry")
    assert (info.value.status, info.value.code) == (409, "DELIVERY_IN_PROGRESS")
    with pytest.raises(ConsoleError) as info:
        call("webhooks", "POST", f"/deliveries/{uuid.uuid4()}/retry")
    assert info.value.status == 404
