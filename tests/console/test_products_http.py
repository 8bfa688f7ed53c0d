"""The suite's console products over HTTP: bearer sessions, permission levels, JSON and streams."""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import UTC, timedelta

import pytest
from django.utils import timezone

from better_audit.models import AuditLog
from better_console.testing import ALL_PERMISSIONS, auth_headers, session_token
from better_mail.models import MailLog, MailStatus
from better_tenant import api, run_as, run_as_system
from better_tenant.models import Tenant
from better_webhooks.endpoints import create_endpoint
from better_webhooks.events import register_event, unregister_event
from better_webhooks.models import WebhookDelivery, WebhookEndpoint
from better_webhooks.sending import send
from tests.support.audit import add_rows
from tests.testapp.models import Invoice

pytestmark = pytest.mark.django_db

BASE = "/.well-known/better"


@pytest.fixture(autouse=True)
def catalog():
    register_event("order.created", "An order was placed.")
    yield
    unregister_event("order.created")


@pytest.fixture
def as_level(db):
    """Test client keyword arguments of a stored session with the given permission levels."""

    def make(permissions=ALL_PERMISSIONS):
        return auth_headers(session_token(permissions))

    return make


def send_json(client, method, path, body, auth):
    return getattr(client, method)(
        BASE + path, data=json.dumps(body), content_type="application/json", **auth
    )


def test_capabilities_list_the_four_products(client):
    products = client.get(f"{BASE}/console/capabilities").json()["products"]
    assert {"tenant", "audit", "webhooks", "mail"} <= set(products)


def test_a_product_route_needs_a_session(client):
    response = client.get(f"{BASE}/tenant/tenants")
    assert response.status_code == 401
    assert response.json() == {"error": "Missing session token", "code": "MISSING_TOKEN"}
    # Not a bearer token either.
    response = client.get(f"{BASE}/tenant/tenants", HTTP_AUTHORIZATION="Basic dXNlcjpwYXNz")
    assert (response.status_code, response.json()["code"]) == (401, "MISSING_TOKEN")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("put", "/tenant/tenants/{id}"),
        ("post", "/tenant/tenants/{id}"),
        ("delete", "/tenant/tenants"),
        ("post", "/tenant/stats"),
        ("post", "/audit/logs"),
        ("patch", "/audit/logs/{id}"),
        ("delete", "/audit/export"),
        ("get", "/audit/nothing-here"),
    ],
)
def test_a_wrong_method_on_a_product_path_is_not_found(client, as_level, method, path):
    tenant = api.create_tenant("Acme Corp", "acme")
    url = BASE + path.format(id=tenant.pk)
    response = getattr(client, method)(url, **as_level("admin"))
    assert response.status_code == 404
    assert response.json()["error"] == "Not found"
    with run_as_system():
        assert Tenant.objects.filter(pk=tenant.pk).exists()


def test_tenants_read_create_and_delete_by_level(client, as_level):
    api.create_tenant("Acme Corp", "acme")
    response = client.get(f"{BASE}/tenant/tenants", {"search": "acme"}, **as_level("read"))
    assert response.status_code == 200
    assert [t["slug"] for t in response.json()] == ["acme"]
    stats = client.get(f"{BASE}/tenant/stats", **as_level("read"))
    assert (stats.status_code, stats.json()) == (200, {"tenantCount": 1})

    body = {"name": "Globex", "slug": "globex"}
    refused = send_json(client, "post", "/tenant/tenants", body, as_level("read"))
    assert refused.status_code == 403
    assert refused.json() == {"error": "Insufficient permissions", "code": "FORBIDDEN"}
    with run_as_system():
        assert not Tenant.objects.filter(slug="globex").exists()

    created = send_json(client, "post", "/tenant/tenants", body, as_level("write"))
    assert created.status_code == 201
    with run_as_system():
        globex = Tenant.objects.get(pk=created.json()["id"])
    assert (globex.name, globex.slug) == ("Globex", "globex")

    path = f"{BASE}/tenant/tenants/{globex.pk}"
    assert client.delete(path, **as_level("write")).status_code == 403
    with run_as_system():
        assert Tenant.objects.filter(pk=globex.pk).exists()
    deleted = client.delete(path, **as_level("admin"))
    assert deleted.status_code == 204 and deleted.content == b""
    with run_as_system():
        assert not Tenant.objects.filter(pk=globex.pk).exists()
    # Deleting again is not an error.
    assert client.delete(path, **as_level("admin")).status_code == 204


def test_tenants_page_by_limit_and_offset(client, as_level):
    for n in range(5):
        api.create_tenant(f"Tenant {n}", f"tenant-{n}")
    auth = as_level("read")
    page = client.get(f"{BASE}/tenant/tenants", {"limit": "2", "offset": "3"}, **auth).json()
    assert [t["slug"] for t in page] == ["tenant-3", "tenant-4"]
    capped = client.get(f"{BASE}/tenant/tenants", {"limit": "999999"}, **auth)
    assert capped.status_code == 200 and len(capped.json()) == 5


def test_bad_input_is_a_json_400_with_a_code(client, as_level):
    api.create_tenant("Acme Corp", "acme")
    response = send_json(
        client, "post", "/tenant/tenants", {"name": "Acme", "slug": "acme"}, as_level("write")
    )
    assert response.status_code == 409
    assert response.json()["code"] == "DUPLICATE_TENANT_SLUG"
    response = send_json(client, "post", "/tenant/tenants", {"name": "Acme"}, as_level("write"))
    assert response.status_code == 400
    assert response.json() == {"error": "name and slug are required", "code": "INVALID_BODY"}
    response = client.post(f"{BASE}/tenant/tenants", **as_level("write"))
    assert response.status_code == 400
    assert response.json() == {"error": "Request body is required", "code": "INVALID_BODY"}
    response = client.get(f"{BASE}/tenant/tenants", {"limit": "0"}, **as_level())
    assert response.status_code == 400
    assert response.json() == {
        "error": "Invalid 'limit': must be a positive integer (max 1000)",
        "code": "INVALID_LIMIT",
    }
    response = client.get(f"{BASE}/tenant/tenants", {"offset": "-1"}, **as_level())
    assert response.status_code == 400
    assert response.json() == {
        "error": "Invalid 'offset': must be a non-negative integer",
        "code": "INVALID_OFFSET",
    }
    response = client.get(f"{BASE}/tenant/tenants/{uuid.uuid4()}", **as_level())
    assert response.status_code == 404
    assert response.json() == {"error": "Tenant not found", "code": "TENANT_NOT_FOUND"}


def test_audit_logs_narrowed_by_tenant_and_exported(client, as_level, tenant, other_tenant):
    with run_as(tenant):
        Invoice.objects.create(number="A-1")
    with run_as(other_tenant):
        Invoice.objects.create(number="B-1")
    auth = as_level("read")
    every = client.get(f"{BASE}/audit/logs", **auth).json()
    assert every["hasNextPage"] is False
    assert {e["tenantId"] for e in every["entries"]} == {str(tenant.pk), str(other_tenant.pk)}
    mine = client.get(f"{BASE}/audit/logs", {"tenantId": str(tenant.pk)}, **auth).json()
    assert [e["tenantId"] for e in mine["entries"]] == [str(tenant.pk)]
    assert mine["entries"][0]["afterData"]["number"] == "A-1"

    export = client.get(f"{BASE}/audit/export", {"tenantId": str(other_tenant.pk)}, **auth)
    assert export.status_code == 200
    assert export["Content-Type"] == "text/csv; charset=utf-8"
    assert export["Cache-Control"] == "no-cache"
    today = timezone.now().astimezone(UTC).date().isoformat()
    assert export["Content-Disposition"] == f'attachment; filename="audit-export-{today}.csv"'
    rows = list(csv.DictReader(io.StringIO(b"".join(export.streaming_content).decode())))
    assert [json.loads(row["afterData"])["number"] for row in rows] == ["B-1"]
    assert json.loads(export["X-Audit-Chain-Head"])["chains"][0]["chain"] == str(other_tenant.pk)

    export = client.get(f"{BASE}/audit/export", {"format": "json"}, **auth)
    assert export["Content-Disposition"] == f'attachment; filename="audit-export-{today}.json"'
    exported = json.loads(b"".join(export.streaming_content))
    assert [e["id"] for e in exported] == [e["id"] for e in every["entries"]]


def test_audit_stats_and_enrichments_over_http(client, as_level, tenant):
    with run_as(tenant):
        Invoice.objects.create(number="A-1")
    stats = client.get(f"{BASE}/audit/stats", **as_level("read"))
    assert stats.status_code == 200
    assert (stats.json()["totalLogs"], stats.json()["operationBreakdown"]) == (1, {"INSERT": 1})
    enrichments = client.get(f"{BASE}/audit/enrichments", **as_level("read"))
    assert (enrichments.status_code, enrichments.json()) == (200, [])


def test_audit_purge_needs_admin(client, as_level, tenant):
    old = timezone.now() - timedelta(days=100)
    add_rows(
        AuditLog(timestamp=old, table_name="test_invoices", operation="INSERT", record_id="1"),
        AuditLog(table_name="test_invoices", operation="INSERT", record_id="2"),
    )
    body = {"before": (timezone.now() - timedelta(days=30)).isoformat()}
    for level in ("read", "write"):
        refused = send_json(client, "delete", "/audit/logs", body, as_level(level))
        assert (refused.status_code, refused.json()) == (
            403,
            {"error": "Insufficient permissions", "code": "FORBIDDEN"},
        )
    with run_as_system():
        assert AuditLog.objects.count() == 2
    purged = send_json(client, "delete", "/audit/logs", body, as_level("admin"))
    assert (purged.status_code, purged.json()) == (200, {"deletedCount": 1})
    with run_as_system():
        assert list(AuditLog.objects.values_list("record_id", flat=True)) == ["2"]
    missing = send_json(client, "delete", "/audit/logs", {}, as_level("admin"))
    assert (missing.status_code, missing.json()["error"]) == (400, "Missing required field: before")


def test_webhook_writes_by_level_and_no_secret_in_reads(client, as_level, tenant):
    body = {"url": "https://hooks.example.com/h", "events": ["order.created"]}
    assert (
        send_json(client, "post", "/webhooks/endpoints", body, as_level("read")).status_code == 403
    )
    with run_as_system():
        assert not WebhookEndpoint.objects.exists()
    created = send_json(
        client,
        "post",
        "/webhooks/endpoints",
        {**body, "tenantId": str(tenant.pk)},
        as_level("write"),
    )
    assert created.status_code == 201
    assert created.json()["secret"].startswith("whsec_")
    endpoint_id = created.json()["id"]
    read = client.get(f"{BASE}/webhooks/endpoints/{endpoint_id}", **as_level("read"))
    assert read.status_code == 200 and "secret" not in read.json()
    assert read.json()["tenantId"] == str(tenant.pk)
    path = f"{BASE}/webhooks/endpoints/{endpoint_id}"
    assert client.delete(path, **as_level("write")).status_code == 403
    assert client.delete(path, **as_level("admin")).status_code == 204
    with run_as_system():
        assert not WebhookEndpoint.objects.filter(pk=endpoint_id).exists()


def test_webhook_retry_needs_write(client, as_level, tenant):
    with run_as(tenant):
        create_endpoint("https://hooks.example.com/h", ["*"])
        [delivery] = send("order.created", {"n": 1})
        WebhookDelivery.objects.filter(pk=delivery.pk).update(status="failed")
    path = f"{BASE}/webhooks/deliveries/{delivery.pk}/retry"
    assert client.post(path, **as_level("read")).status_code == 403
    response = client.post(path, **as_level("write"))
    assert response.status_code == 202 and response.json()["status"] == "pending"
    with run_as_system():
        assert WebhookDelivery.objects.get(pk=delivery.pk).status == "pending"


def test_mail_resend_needs_write_and_stats_need_read(client, as_level, tenant):
    with run_as_system():
        log = MailLog.objects.create(
            tenant_id=tenant.pk,
            template="welcome",
            to=["ada@example.com"],
            subject="Welcome",
            status=MailStatus.SENT,
            html_body="<p>Hi</p>",
            sent_at=timezone.now(),
        )
    path = f"{BASE}/mail/logs/{log.pk}/resend"
    assert client.post(path, **as_level("read")).status_code == 403
    response = client.post(path, **as_level("write"))
    assert response.status_code == 202
    stats = client.get(f"{BASE}/mail/stats", {"tenantId": str(tenant.pk)}, **as_level("read"))
    assert stats.json()["byStatus"]["sent"] == 1 and stats.json()["byStatus"]["queued"] == 1
    with run_as_system():
        assert MailLog.objects.filter(metadata__resent_from=str(log.pk)).count() == 1
