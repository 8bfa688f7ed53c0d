"""Without better_tenant: webhooks are sent, delivered and managed, mails are logged and sent."""

from __future__ import annotations

import io
import json

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.management import call_command

import better_mail
import better_webhooks as webhooks
from better_mail.models import MailLog, MailStatus
from better_webhooks.models import WebhookDelivery, WebhookDeliveryAttempt, WebhookEndpoint
from better_webhooks.worker import Worker

pytestmark = pytest.mark.django_db

API = "/api/webhooks"


def one_batch() -> int:
    worker = Worker(concurrency=1)
    try:
        return worker.run_once()
    finally:
        worker.close()


def test_send_queues_then_the_worker_delivers_signed(receiver):
    endpoint, secret = webhooks.create_endpoint(receiver.url(), ["order.created"])
    assert endpoint.tenant_id is None
    [queued] = webhooks.send("order.created", {"number": "A-1"})
    assert (queued.status, queued.tenant_id, queued.endpoint_id) == ("pending", None, endpoint.pk)

    assert one_batch() == 1
    [request] = receiver.requests
    assert request.path == "/hook"
    body = json.loads(request.body)
    assert (body["type"], body["data"]) == ("order.created", {"number": "A-1"})
    assert webhooks.verify_webhook_signature(request.body, request.headers, secret)

    delivery = WebhookDelivery.objects.get(pk=queued.pk)
    assert (delivery.status, delivery.attempts) == ("delivered", 1)
    [attempt] = WebhookDeliveryAttempt.objects.filter(delivery_id=queued.pk)
    assert (attempt.response_status, attempt.tenant_id) == (200, None)


def test_a_tenant_is_refused_where_no_tenant_exists(receiver):
    """As the console answers 400 to a tenantId, the Python API refuses tenant= it cannot check."""
    import uuid

    from better_webhooks.exceptions import TenancyNotInstalledError

    someone = uuid.uuid4()
    with pytest.raises(TenancyNotInstalledError, match="better_tenant"):
        webhooks.create_endpoint(receiver.url(), ["order.created"], tenant=someone)
    webhooks.create_endpoint(receiver.url(), ["order.created"])
    with pytest.raises(TenancyNotInstalledError):
        webhooks.send("order.created", {"number": "A-2"}, tenant=someone)
    # Nothing was stored for the refused calls.
    assert WebhookEndpoint.objects.count() == 1
    assert not WebhookDelivery.objects.exists()


def test_the_celery_task_delivers_after_commit(
    receiver, settings, django_capture_on_commit_callbacks
):
    from celery import current_app

    settings.BETTER_WEBHOOKS = {**settings.BETTER_WEBHOOKS, "CELERY": True}
    saved = current_app.conf.task_always_eager
    # The task runs in this process; its body is what a Celery worker runs.
    current_app.conf.task_always_eager = True
    try:
        webhooks.create_endpoint(receiver.url("/celery"), ["order.created"])
        with django_capture_on_commit_callbacks(execute=True):
            [queued] = webhooks.send("order.created", {"number": "C-1"})
            assert receiver.requests == []
    finally:
        current_app.conf.task_always_eager = saved
    assert [json.loads(r.body)["data"] for r in receiver.requests] == [{"number": "C-1"}]
    assert WebhookDelivery.objects.get(pk=queued.pk).status == "delivered"


def test_send_validates_against_the_catalog():
    from better_webhooks.exceptions import PayloadValidationError

    with pytest.raises(PayloadValidationError):
        webhooks.send("order.created", {"total": 3})
    assert not WebhookDelivery.objects.exists()


def test_staff_manage_endpoints_through_the_api(client):
    # With better_tenant only superusers may work outside a tenant; without it, staff may.
    staff = get_user_model().objects.create_user("staff", is_staff=True)
    client.force_login(staff)
    created = client.post(
        f"{API}/endpoints",
        {"url": "https://hooks.example.com/in", "events": ["order.created"]},
        content_type="application/json",
    )
    assert created.status_code == 201, created.content
    assert created.json()["tenantId"] is None and created.json()["secret"].startswith("whsec_")
    listed = client.get(f"{API}/endpoints")
    assert listed.status_code == 200
    assert [e["url"] for e in listed.json()["data"]] == ["https://hooks.example.com/in"]
    assert WebhookEndpoint.objects.get().tenant_id is None


def test_the_webhooks_check_command_passes():
    webhooks.create_endpoint("https://hooks.example.com/in", ["order.created"])
    out = io.StringIO()
    call_command("better_webhooks", "check", stdout=out)
    assert "tables readable: 1 endpoints" in out.getvalue()
    assert "every endpoint secret decrypts" in out.getvalue()


def test_mail_send_writes_and_sends_a_log(django_capture_on_commit_callbacks):
    mail.outbox = []
    with django_capture_on_commit_callbacks(execute=True):
        log = better_mail.send("order_confirmed", to="ada@example.com", number="A-7")
    [message] = mail.outbox
    assert (message.subject, message.to) == ("Order A-7 confirmed", ["ada@example.com"])
    assert "Your order A-7 is confirmed." in message.body
    row = MailLog.objects.get()
    assert (row.pk, row.status, row.tenant_id) == (log.pk, MailStatus.SENT, None)
