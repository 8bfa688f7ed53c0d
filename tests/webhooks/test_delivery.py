"""The delivery engine against a real local HTTP server: outcomes, retries, backoff."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

import better_webhooks as webhooks
from better_webhooks import delivery, signals
from better_webhooks.db import system_scope
from better_webhooks.models import WebhookDelivery, WebhookDeliveryAttempt, WebhookEndpoint
from better_webhooks.worker import Worker


def send_one(receiver, event="ping"):
    endpoint, _ = webhooks.create_endpoint(receiver.url(), [event])
    (sent,) = webhooks.send(event, {"n": 1})
    return endpoint, sent


def one_batch():
    worker = Worker(concurrency=1)
    try:
        return worker.run_once()
    finally:
        worker.close()


def state(sent):
    with system_scope():
        row = WebhookDelivery.objects.get(id=sent.id)
        attempts = list(WebhookDeliveryAttempt.objects.filter(delivery_id=sent.id))
        endpoint = WebhookEndpoint.objects.get(id=sent.endpoint_id)
    return row, attempts, endpoint


def test_default_backoff_schedule(settings):
    settings.BETTER_WEBHOOKS = {**settings.BETTER_WEBHOOKS, "RETRY_JITTER": 0}
    waits = [delivery.backoff(n) for n in range(1, 8)]
    assert waits == [5, 300, 1800, 7200, 18000, 36000, 36000]


def test_backoff_jitter_stays_within_bounds(settings):
    settings.BETTER_WEBHOOKS = {**settings.BETTER_WEBHOOKS, "RETRY_JITTER": 0.2}
    waits = {delivery.backoff(2) for _ in range(50)}
    assert all(240 <= wait <= 360 for wait in waits)
    assert len(waits) > 1


def test_2xx_delivers(db, receiver):
    receiver.answer(204)
    _, sent = send_one(receiver)
    assert one_batch() == 1
    row, attempts, _ = state(sent)
    assert row.status == "delivered" and row.attempts == 1 and row.delivered_at
    assert row.lease_until is None and row.locked_by is None
    assert attempts[0].response_status == 204 and attempts[0].duration_ms >= 0
    body = receiver.requests[0].json()
    assert body["type"] == "ping" and body["data"] == {"n": 1} and body["timestamp"]


@pytest.mark.parametrize("status", [500, 503, 400, 404, 302])
def test_non_2xx_is_retried_with_backoff(db, receiver, settings, status):
    settings.BETTER_WEBHOOKS = {**settings.BETTER_WEBHOOKS, "RETRY_JITTER": 0}
    headers = {"Location": "http://169.254.169.254/latest"} if status == 302 else {}
    receiver.answer(status, headers, b"nope")
    _, sent = send_one(receiver)
    before = timezone.now()
    one_batch()
    row, attempts, endpoint = state(sent)
    assert row.status == "pending" and row.attempts == 1
    assert row.last_status_code == status
    wait = (row.next_attempt_at - before).total_seconds()
    assert 4 <= wait <= 6
    assert attempts[0].response_body == "nope"
    assert endpoint.status == "active" and endpoint.failing_since is not None
    # A redirect is recorded, not followed.
    assert len(receiver.requests) == 1
    if status == 302:
        assert "not followed" in row.last_error


def test_410_disables_the_endpoint(db, receiver):
    receiver.answer(410)
    received = []
    signals.endpoint_disabled.connect(
        lambda sender, endpoint, reason, **kw: received.append((endpoint.id, reason)),
        weak=False,
        dispatch_uid="test-410",
    )
    try:
        endpoint, sent = send_one(receiver)
        from django.db import connection

        one_batch()
        for _, callback, _ in connection.run_on_commit:
            callback()
        connection.run_on_commit.clear()
    finally:
        signals.endpoint_disabled.disconnect(dispatch_uid="test-410")
    row, _, endpoint_row = state(sent)
    assert row.status == "failed" and row.attempts == 1
    assert endpoint_row.status == "disabled" and "410" in endpoint_row.disabled_reason
    assert received == [(endpoint.id, endpoint_row.disabled_reason)]
    # Nothing more is sent to a disabled endpoint.
    assert webhooks.send("ping", {"n": 2}) == []


@pytest.mark.parametrize(
    ("status", "retry_after", "expected"), [(429, "120", 120), (503, "99999", 3600), (429, "0", 1)]
)
def test_retry_after_is_honoured_within_bounds(db, receiver, status, retry_after, expected):
    receiver.answer(status, {"Retry-After": retry_after})
    _, sent = send_one(receiver)
    before = timezone.now()
    one_batch()
    row, _, _ = state(sent)
    wait = (row.next_attempt_at - before).total_seconds()
    assert expected - 1 <= wait <= expected + 1


def test_response_body_is_capped(db, receiver, settings):
    settings.BETTER_WEBHOOKS = {**settings.BETTER_WEBHOOKS, "MAX_RESPONSE_BODY": 1000}
    receiver.answer(200, {}, b"x" * 50_000)
    _, sent = send_one(receiver)
    one_batch()
    row, attempts, _ = state(sent)
    assert row.status == "delivered"
    assert len(attempts[0].response_body) == 1000


def test_pending_delivery_of_a_disabled_endpoint_ends_failed(db, receiver):
    endpoint, sent = send_one(receiver)
    webhooks.disable_endpoint(endpoint)
    one_batch()
    row, attempts, _ = state(sent)
    assert row.status == "failed" and "disabled" in row.last_error
    assert attempts == [] and receiver.requests == []


def test_connection_refused_is_retried(db, receiver):
    _endpoint, sent = send_one(receiver)
    receiver.server.shutdown()
    receiver.server.server_close()
    one_batch()
    row, attempts, _ = state(sent)
    assert row.status == "pending" and row.attempts == 1
    assert attempts[0].response_status is None and attempts[0].error


def test_retries_do_not_starve_fresh_deliveries(db, receiver, settings):
    settings.BETTER_WEBHOOKS = {**settings.BETTER_WEBHOOKS, "RETRY_SHARE": 0.5}
    webhooks.create_endpoint(receiver.url(), ["ping"])
    for n in range(10):
        webhooks.send("ping", {"n": n})
    with system_scope():
        # Ten due retries, all older than the fresh deliveries below.
        WebhookDelivery.objects.update(
            attempts=1, next_attempt_at=timezone.now() - timedelta(hours=1)
        )
    for n in range(10):
        webhooks.send("ping", {"fresh": n})
    claimed = delivery.claim(4, "w")
    assert len(claimed) == 4
    assert sum(1 for c in claimed if c.attempts == 0) == 2
    assert sum(1 for c in claimed if c.attempts == 1) == 2
    # With no fresh traffic left, retries fill the batch.
    delivery.claim(20, "w")
    more = delivery.claim(20, "w2")
    assert more == []


def test_a_held_delivery_is_not_claimed_twice_until_its_lease_expires(db, receiver):
    _, sent = send_one(receiver)
    (first,) = delivery.claim(10, "worker-a", lease=60)
    assert delivery.claim(10, "worker-b") == []
    with system_scope():
        WebhookDelivery.objects.filter(id=sent.id).update(
            lease_until=timezone.now() - timedelta(seconds=1)
        )
    (again,) = delivery.claim(10, "worker-b")
    assert again.id == first.id
    # The first worker lost the lease: its late result is not written over the new holder's.
    outcome = delivery.Outcome(first, 1, "delivered")
    assert delivery.record([outcome], "worker-a") == []
    row, _, _ = state(sent)
    assert row.status == "delivering" and row.locked_by == "worker-b"


def test_worker_delivers_every_tenant_and_logs_stay_scoped(
    db, receiver, tenant, other_tenant, as_tenant
):
    with as_tenant(tenant):
        webhooks.create_endpoint(receiver.url(), ["ping"])
        (sent,) = webhooks.send("ping", {"n": 1})
    with as_tenant(other_tenant):
        webhooks.create_endpoint(receiver.url("/b"), ["ping"])
        webhooks.send("ping", {"n": 2})
    assert one_batch() == 2
    assert sorted(r.path for r in receiver.requests) == ["/b", "/hook"]
    with as_tenant(tenant):
        (attempt,) = WebhookDeliveryAttempt.objects.all()
        assert attempt.delivery_id == sent.id and attempt.tenant_id == tenant.id
        assert WebhookDelivery.objects.get().status == "delivered"
    with as_tenant(other_tenant):
        assert WebhookDeliveryAttempt.objects.exclude(tenant_id=other_tenant.id).count() == 0


def test_celery_sweep_task_sends_due_deliveries(db, receiver):
    from better_webhooks import tasks

    send_one(receiver)
    assert tasks.deliver_due.apply().get() == 1
    assert len(receiver.requests) == 1


def test_a_response_body_with_nul_bytes_is_recorded(db, receiver):
    send_one(receiver)
    receiver.answer(200, body=b"ok\x00done")
    assert one_batch() == 1
    with system_scope():
        (attempt,) = WebhookDeliveryAttempt.objects.all()
        assert attempt.response_body == "ok\ufffddone"
        assert WebhookDelivery.objects.get().status == "delivered"
