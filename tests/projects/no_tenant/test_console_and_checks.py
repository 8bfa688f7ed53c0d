"""Without better_tenant: console products, ?tenantId= refused, sign-in mail, admin, checks."""

from __future__ import annotations

import io
import json
import re
import uuid
from datetime import timedelta

import pytest
from django.core import checks, mail
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

import better_mail
import better_webhooks as webhooks
from better_audit.models import AuditLog
from better_mail.models import MailLog
from better_webhooks.models import WebhookEndpoint
from tests.projects.no_tenant.models import Order
from tests.support.audit import add_rows

pytestmark = pytest.mark.django_db

BASE = "/.well-known/better"
READS = [
    ("audit", "/logs"),
    ("audit", "/stats"),
    ("webhooks", "/endpoints"),
    ("webhooks", "/deliveries"),
    ("mail", "/logs"),
    ("mail", "/stats"),
]


def test_the_capabilities_list_the_installed_products(client):
    products = client.get(f"{BASE}/console/capabilities").json()["products"]
    assert {"audit", "webhooks", "mail"} <= set(products)
    assert "tenant" not in products


def test_product_routes_answer_with_rows_of_no_tenant(client, console_auth):
    Order.objects.create(number="A-1")
    webhooks.create_endpoint("https://hooks.example.com/in", ["order.created"])
    better_mail.send("order_confirmed", to="ada@example.com", number="A-1")
    auth = console_auth("read")

    [entry] = client.get(f"{BASE}/audit/logs", **auth).json()["entries"]
    assert (entry["tableName"], entry["afterData"]["number"]) == ("no_tenant_orders", "A-1")
    assert entry.get("tenantId") is None
    [endpoint] = client.get(f"{BASE}/webhooks/endpoints", **auth).json()["entries"]
    assert endpoint["url"] == "https://hooks.example.com/in"
    [log] = client.get(f"{BASE}/mail/logs", **auth).json()["entries"]
    assert log["template"] == "order_confirmed"


@pytest.mark.parametrize(("product", "path"), READS)
def test_tenant_id_is_refused_as_tenancy_not_installed(client, console_auth, product, path):
    auth = console_auth("read")
    assert client.get(f"{BASE}/{product}{path}", **auth).status_code == 200
    response = client.get(f"{BASE}/{product}{path}", {"tenantId": str(uuid.uuid4())}, **auth)
    assert response.status_code == 400
    assert response.json()["code"] == "TENANCY_NOT_INSTALLED"


def test_an_endpoint_for_a_tenant_is_refused(client, console_auth):
    body = {"url": "https://hooks.example.com/in", "events": ["order.created"]}
    response = client.post(
        f"{BASE}/webhooks/endpoints",
        json.dumps({**body, "tenantId": str(uuid.uuid4())}),
        content_type="application/json",
        **console_auth("write"),
    )
    assert (response.status_code, response.json()["code"]) == (400, "TENANCY_NOT_INSTALLED")
    assert not WebhookEndpoint.objects.exists()


def test_system_checks_pass_with_no_better_tenant_ids():
    call_command("check", databases=["default"], stdout=io.StringIO())
    messages = checks.run_checks(databases=["default"])
    assert [m for m in messages if m.is_serious()] == []
    assert [m.id for m in messages if (m.id or "").startswith("better_tenant")] == []


@pytest.mark.parametrize(
    ("app", "passed"),
    [("better_audit", "checks passed."), ("better_console", "checks passed.")],
)
def test_the_apps_check_commands_pass(app, passed):
    out = io.StringIO()
    call_command(app, "check", stdout=out, stderr=io.StringIO())
    assert out.getvalue().rstrip().endswith(passed) and "✗" not in out.getvalue()


def test_the_magic_link_code_is_mailed_through_better_mail(
    client, settings, django_capture_on_commit_callbacks
):
    mail.outbox = []
    settings.BETTER_CONSOLE = {
        **settings.BETTER_CONSOLE,
        "AUTO_APPROVE": False,
        "MAGIC_LINK": {"ALLOWED_EMAILS": ["admin@example.com"]},
    }
    with django_capture_on_commit_callbacks(execute=True):
        started = client.post(
            f"{BASE}/console/session/init",
            json.dumps({"email": "admin@example.com"}),
            content_type="application/json",
        )
    assert started.status_code == 200
    [message] = mail.outbox
    assert message.to == ["admin@example.com"]
    code = re.search(r"^([A-Z0-9]{6})$", message.body, re.MULTILINE).group(1)
    [log] = MailLog.objects.all()
    assert (log.template, log.status, log.tenant_id) == ("console_magic_link", "sent", None)
    verified = client.post(
        f"{BASE}/console/session/verify",
        json.dumps({"session_id": started.json()["sessionId"], "code": code}),
        content_type="application/json",
    )
    assert verified.json() == {"status": "verified"}


def test_the_audit_trail_is_purged_through_the_console(client, console_auth):
    old = timezone.now() - timedelta(days=100)
    add_rows(
        AuditLog(timestamp=old, table_name="no_tenant_orders", operation="INSERT", record_id="1"),
        AuditLog(table_name="no_tenant_orders", operation="INSERT", record_id="2"),
    )
    before = (timezone.now() - timedelta(days=30)).isoformat()
    purged = client.delete(
        f"{BASE}/audit/logs",
        json.dumps({"before": before}),
        content_type="application/json",
        **console_auth("admin"),
    )
    assert (purged.status_code, purged.json()) == (200, {"deletedCount": 1})
    assert list(AuditLog.objects.values_list("record_id", flat=True)) == ["2"]


def test_the_admin_pages_of_the_three_apps_render(admin_client):
    Order.objects.create(number="A-1")
    endpoint, _ = webhooks.create_endpoint("https://hooks.example.com/in", ["order.created"])
    [delivery] = webhooks.send("order.created", {"number": "A-1"})
    log = better_mail.send("order_confirmed", to="ada@example.com", number="A-1")
    entry = AuditLog.objects.get()
    pages = {
        "better_audit_auditlog": entry.pk,
        "better_webhooks_webhookendpoint": endpoint.pk,
        "better_webhooks_webhookdelivery": delivery.pk,
        "better_mail_maillog": log.pk,
    }
    for model, pk in pages.items():
        changelist = admin_client.get(reverse(f"admin:{model}_changelist"))
        assert changelist.status_code == 200, model
        assert str(pk) in changelist.content.decode(), model
        assert admin_client.get(reverse(f"admin:{model}_change", args=[pk])).status_code == 200
