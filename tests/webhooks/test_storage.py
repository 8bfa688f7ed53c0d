"""Payloads are bounded (MAX_PAYLOAD_BYTES) and stored once per message, not per delivery or
attempt; migration 0003 moves the stored payloads and moves them back."""

from __future__ import annotations

import base64
import json
import os

import pytest
from django.core.management import call_command
from django.db import connection

import better_webhooks as webhooks
from better_tenant import run_as, run_as_system
from better_tenant.testing import connected_as_owner
from better_webhooks.exceptions import PayloadTooLargeError
from better_webhooks.models import WebhookDelivery, WebhookDeliveryAttempt, WebhookMessage
from tests.support.webhooks import run_worker_until_idle


def columns(table: str) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s", [table]
        )
        return {row[0] for row in cursor.fetchall()}


def counts() -> tuple[int, int]:
    with run_as_system():
        return WebhookMessage.objects.count(), WebhookDelivery.objects.count()


def test_a_payload_over_the_limit_is_refused_and_nothing_is_stored(db, settings):
    settings.BETTER_WEBHOOKS = {**settings.BETTER_WEBHOOKS, "MAX_PAYLOAD_BYTES": 100}
    webhooks.create_endpoint("https://hooks.example.com/in", ["ping"])
    with pytest.raises(PayloadTooLargeError) as error:
        webhooks.send("ping", {"text": "x" * 200})
    assert (error.value.size, error.value.limit) == (len('{"text":""}') + 200, 100)
    assert "MAX_PAYLOAD_BYTES" in str(error.value) and "211 bytes" in str(error.value)
    assert counts() == (0, 0)
    # Exactly at the limit is accepted; the size is the payload's compact UTF-8 JSON.
    webhooks.send("ping", {"text": "é" * ((100 - len('{"text":""}')) // 2)})
    assert counts() == (1, 1)


def test_the_default_limit_refuses_five_megabytes(db):
    webhooks.create_endpoint("https://hooks.example.com/in", ["ping"])
    with pytest.raises(PayloadTooLargeError) as error:
        webhooks.send("ping", {"blob": "x" * 5_000_000})
    assert error.value.limit == 350 * 1024
    webhooks.send("ping", {"blob": "x" * 300_000})
    assert counts() == (1, 1)


def test_no_limit_when_the_setting_is_none(db, settings):
    settings.BETTER_WEBHOOKS = {**settings.BETTER_WEBHOOKS, "MAX_PAYLOAD_BYTES": None}
    webhooks.create_endpoint("https://hooks.example.com/in", ["ping"])
    webhooks.send("ping", {"blob": "x" * 1_000_000})
    assert counts() == (1, 1)


@pytest.mark.urls("tests.webhooks.urls")
def test_the_api_answers_413_for_a_test_event_over_the_limit(admin_client, settings):
    settings.BETTER_WEBHOOKS = {**settings.BETTER_WEBHOOKS, "MAX_PAYLOAD_BYTES": 1000}
    # The request names no tenant: the API runs in system mode for the superuser.
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if not m.endswith("TenantMiddleware")]
    endpoint, _ = webhooks.create_endpoint("https://hooks.example.com/in", ["ping"])
    response = admin_client.post(
        f"/webhooks/endpoints/{endpoint.pk}/test",
        json.dumps({"payload": {"blob": "x" * 2000}}),
        content_type="application/json",
    )
    assert response.status_code == 413, response.content
    body = response.json()
    assert body["code"] == "PAYLOAD_TOO_LARGE" and body["details"]["limit"] == 1000
    assert counts() == (0, 0)


def test_a_message_is_stored_once_whatever_its_endpoints_and_attempts(db, receiver, fast_retries):
    for path in ("/a", "/b", "/c"):
        webhooks.create_endpoint(receiver.url(path), ["ping"])
    payload = {"blob": base64.b64encode(os.urandom(75_000)).decode()}  # 100 kB, incompressible
    deliveries = webhooks.send("ping", payload)
    assert len(deliveries) == 3 and len({d.message_id for d in deliveries}) == 1
    receiver.script(500, 500, 500)  # every endpoint fails once, then succeeds
    run_worker_until_idle()
    with run_as_system():
        assert WebhookMessage.objects.count() == 1
        assert WebhookDeliveryAttempt.objects.count() == 6
        with connection.cursor() as cursor:
            cursor.execute("SELECT sum(pg_column_size(m.*)) FROM webhook_messages m")
            messages = cursor.fetchone()[0]
            cursor.execute("SELECT sum(pg_column_size(a.*)) FROM webhook_delivery_attempts a")
            attempts = cursor.fetchone()[0]
            cursor.execute("SELECT sum(pg_column_size(d.*)) FROM webhook_deliveries d")
            rows = cursor.fetchone()[0]
        # The payload once (compressed or not), and per attempt and delivery only headers,
        # status and the answer.
        assert messages > 100_000 and attempts < 6 * 2_000 and rows < 3 * 1_000
        # What each attempt sent is still at hand, byte for byte.
        sent = {request.body for request in receiver.requests}
        assert len(sent) == 1
        for attempt in WebhookDeliveryAttempt.objects.select_related("delivery"):
            assert attempt.request_body.encode() in sent
            assert json.loads(attempt.request_body)["data"] == payload
    assert "payload" not in columns("webhook_deliveries")
    assert "request_body" not in columns("webhook_delivery_attempts")


def test_a_delivery_read_in_one_scope_keeps_its_payload_outside_it(db, tenant):
    with run_as(tenant):
        webhooks.create_endpoint("https://hooks.example.com/in", ["ping"])
        webhooks.send("ping", {"n": 1})
        [delivery] = WebhookDelivery.objects.all()
    assert delivery.payload == {"n": 1}  # loaded with the delivery: no query outside the scope


# --- migration 0003 ------------------------------------------------------------------------------


def owner_sql(query: str, params: list | None = None) -> list[tuple]:
    with connected_as_owner(), connection.cursor() as cursor:
        cursor.execute(query, params or [])
        return cursor.fetchall() if cursor.description else []


@pytest.mark.django_db(transaction=True)
def test_migration_moves_payloads_to_messages_and_back(tenant, other_tenant):
    bodies = {}
    try:
        with connected_as_owner():
            call_command("migrate", "better_webhooks", "0002", verbosity=0)
        # Rows as the old schema held them, for two tenants, written in each tenant's scope.
        for n, owner in enumerate((tenant, other_tenant)):
            with run_as(owner), connection.cursor() as cursor:
                cursor.execute(
                    "INSERT INTO webhook_endpoints (id, url, events, description, status, "
                    "disabled_reason, metadata, secrets, consecutive_failures, tenant_id, "
                    "created_at, updated_at) VALUES (gen_random_uuid(), %s, '{ping}', '', "
                    "'active', '', '{}', '[]', 0, %s, now(), now()) RETURNING id",
                    [f"https://{owner.slug}.example.com/h", owner.pk],
                )
                endpoint = cursor.fetchone()[0]
                payload = {"n": n, "text": "é ü"}
                for _ in range(2):  # one message, two deliveries (as to two endpoints)
                    cursor.execute(
                        "INSERT INTO webhook_deliveries (id, message_id, endpoint_id, event, "
                        "payload, status, attempts, max_attempts, next_attempt_at, last_error, "
                        "tenant_id, created_at, updated_at) VALUES (gen_random_uuid(), %s, %s, "
                        "'ping', %s, 'delivered', 1, 5, now(), '', %s, "
                        "'2026-01-02T03:04:05.678Z', now()) RETURNING id",
                        [f"msg_{owner.slug}", endpoint, json.dumps(payload), owner.pk],
                    )
                    delivery = cursor.fetchone()[0]
                    body = json.dumps(
                        {
                            "type": "ping",
                            "timestamp": "2026-01-02T03:04:05.678000Z",
                            "data": payload,
                        },
                        separators=(",", ":"),
                        ensure_ascii=False,
                    )
                    cursor.execute(
                        "INSERT INTO webhook_delivery_attempts (id, delivery_id, attempt, url, "
                        "request_headers, request_body, response_status, response_headers, "
                        "response_body, duration_ms, error, tenant_id, created_at) VALUES "
                        "(gen_random_uuid(), %s, 1, 'https://x', '{}', %s, 200, '{}', '', 5, "
                        "'', %s, now())",
                        [delivery, body, owner.pk],
                    )
                    bodies[str(delivery)] = body
        with connected_as_owner():
            call_command("migrate", "better_webhooks", verbosity=0)
        for owner in (tenant, other_tenant):
            with run_as(owner):
                [message] = WebhookMessage.objects.all()
                assert message.id == f"msg_{owner.slug}" and message.tenant_id == owner.pk
                deliveries = list(WebhookDelivery.objects.all())
                assert len(deliveries) == 2
                assert {d.message_id for d in deliveries} == {message.id}
                for attempt in WebhookDeliveryAttempt.objects.select_related("delivery"):
                    assert attempt.request_body == bodies[str(attempt.delivery_id)]
        # Backwards: the payload column and the request bodies again, the same bytes.
        with connected_as_owner():
            call_command("migrate", "better_webhooks", "0002", verbosity=0)
        with run_as_system(), connection.cursor() as cursor:
            cursor.execute(
                "SELECT a.delivery_id::text, a.request_body, d.payload, d.message_id "
                "FROM webhook_delivery_attempts a JOIN webhook_deliveries d ON d.id = a.delivery_id"
            )
            rows = cursor.fetchall()
        assert len(rows) == 4
        for delivery, body, payload, message in rows:
            assert body == bodies[delivery]
            assert (json.loads(payload) if isinstance(payload, str) else payload) == json.loads(
                body
            )["data"]
            assert message.startswith("msg_")
    finally:
        with connected_as_owner():
            call_command("migrate", "better_webhooks", verbosity=0)
    assert "payload" not in columns("webhook_deliveries")


def test_payload_lookups_still_filter_deliveries(db):
    from django.db.models import Q

    webhooks.create_endpoint("https://hooks.example.com/in", ["ping"])
    webhooks.send("ping", {"id": "a", "n": 1})
    webhooks.send("ping", {"id": "b", "n": 2})
    with run_as_system():
        deliveries = WebhookDelivery.objects
        assert [d.payload["id"] for d in deliveries.filter(payload__id="a")] == ["a"]
        assert [d.payload["id"] for d in deliveries.exclude(payload__n=1)] == ["b"]
        assert deliveries.filter(Q(payload__id="a") | Q(payload__n=2)).count() == 2
        assert deliveries.filter(~Q(payload__id="a")).get().payload["n"] == 2
        assert deliveries.get(payload={"id": "b", "n": 2}).payload["id"] == "b"


def test_a_refreshed_delivery_keeps_its_payload(db, tenant):
    with run_as(tenant):
        webhooks.create_endpoint("https://hooks.example.com/in", ["ping"])
        [delivery] = webhooks.send("ping", {"n": 1})
        WebhookDelivery.objects.filter(pk=delivery.pk).update(status="failed")
        delivery.refresh_from_db()
    assert (delivery.status, delivery.payload) == ("failed", {"n": 1})
