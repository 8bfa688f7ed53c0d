"""Abandoned claims: a delivery whose worker stops while sending it is failed after a few."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

import better_webhooks as webhooks
from better_webhooks import delivery, replay
from better_webhooks.checks import check_configuration
from better_webhooks.db import system_scope
from better_webhooks.models import WebhookDelivery, WebhookDeliveryAttempt
from tests.support.webhooks import run_worker_until_idle


def expire_leases() -> None:
    """What the passing of time does to the leases of a worker that died."""
    with system_scope():
        WebhookDelivery.objects.filter(status="delivering").update(
            lease_until=timezone.now() - timedelta(seconds=1)
        )


def row(delivery_id) -> WebhookDelivery:
    with system_scope():
        return WebhookDelivery.objects.get(id=delivery_id)


def die_after_claiming(worker_id: str) -> list:
    """A worker claims a batch, then is killed before it records anything."""
    claimed = [item.id for item in delivery.claim(10, worker_id)]
    expire_leases()
    return claimed


def attempt_count(delivery_id) -> int:
    with system_scope():
        return WebhookDeliveryAttempt.objects.filter(delivery_id=delivery_id).count()


def test_a_delivery_that_kills_its_worker_every_time_fails_after_the_limit(db, receiver):
    webhooks.create_endpoint(receiver.url(), ["ping"])
    sent = webhooks.send("ping", {"n": 1})[0]
    for number in range(3):
        assert die_after_claiming(f"worker-{number}") == [sent.id]
        assert row(sent.id).abandoned_claims == number
    assert delivery.claim(10, "worker-3") == []
    failed = row(sent.id)
    assert failed.status == "failed"
    assert failed.abandoned_claims == 3
    assert "stopped 3 times while sending it" in failed.last_error
    assert "replay" in failed.last_error
    assert failed.lease_until is None and failed.locked_by is None
    # Nothing was ever attempted, and nothing says otherwise.
    assert failed.attempts == 0 and attempt_count(sent.id) == 0
    assert delivery.claim(10, "worker-4") == []
    run_worker_until_idle()
    assert receiver.requests == []
    assert row(sent.id).status == "failed"


def test_the_attempts_that_did_happen_are_kept_and_no_other_is_made_up(db, receiver, fast_retries):
    webhooks.create_endpoint(receiver.url(), ["ping"])
    sent = webhooks.send("ping", {"n": 1})[0]
    receiver.answer(500)
    worker_claimed = delivery.claim(10, "worker-a")
    client, _ = delivery.sending_pool(1)
    try:
        delivery.deliver_batch(worker_claimed, "worker-a", client)
    finally:
        client.close()
    with system_scope():
        WebhookDelivery.objects.filter(id=sent.id).update(next_attempt_at=timezone.now())
    for number in range(3):
        assert die_after_claiming(f"worker-{number}") == [sent.id]
    assert delivery.claim(10, "worker-3") == []
    failed = row(sent.id)
    assert failed.status == "failed" and failed.abandoned_claims == 3
    assert failed.attempts == 1 and attempt_count(sent.id) == 1
    assert failed.last_status_code == 500
    assert len(receiver.requests) == 1


def test_the_claim_fails_the_abandoned_delivery_and_hands_out_the_rest_of_the_batch(db, receiver):
    webhooks.create_endpoint(receiver.url(), ["ping"])
    poison = webhooks.send("ping", {"n": 1})[0]
    die_after_claiming("worker-0")
    die_after_claiming("worker-1")
    assert row(poison.id).abandoned_claims == 1
    die_after_claiming("worker-2")
    healthy = webhooks.send("ping", {"n": 2})[0]
    claimed = delivery.claim(10, "worker-3")
    assert [item.id for item in claimed] == [healthy.id]
    assert row(poison.id).status == "failed"
    assert row(healthy.id).status == "delivering" and row(healthy.id).abandoned_claims == 0


def test_a_delivery_taken_over_once_then_delivered_keeps_its_count(db, receiver):
    webhooks.create_endpoint(receiver.url(), ["ping"])
    sent = webhooks.send("ping", {"n": 1})[0]
    die_after_claiming("worker-0")
    run_worker_until_idle()
    done = row(sent.id)
    assert done.status == "delivered"
    assert done.abandoned_claims == 1
    assert done.attempts == 1 and attempt_count(sent.id) == 1
    assert [request.headers["webhook-id"] for request in receiver.requests] == [sent.message_id]


def test_released_deliveries_are_not_counted(db, receiver):
    webhooks.create_endpoint(receiver.url(), ["ping"])
    sent = webhooks.send("ping", {"n": 1})[0]
    for number in range(5):
        worker_id = f"worker-{number}"
        (claimed,) = delivery.claim(10, worker_id)
        # The lease had no room left for an attempt: handed back unsent.
        released = delivery.Outcome(claimed, claimed.attempts, "released", recorded=False)
        assert delivery.record([released], worker_id) == [sent.id]
        assert row(sent.id).status == "pending"
    assert row(sent.id).abandoned_claims == 0
    run_worker_until_idle()
    assert row(sent.id).status == "delivered" and row(sent.id).abandoned_claims == 0


def test_the_limit_is_a_setting(db, receiver, settings):
    settings.BETTER_WEBHOOKS = {**settings.BETTER_WEBHOOKS, "ABANDONED_LIMIT": 1}
    webhooks.create_endpoint(receiver.url(), ["ping"])
    sent = webhooks.send("ping", {"n": 1})[0]
    die_after_claiming("worker-0")
    assert delivery.claim(10, "worker-1") == []
    failed = row(sent.id)
    assert failed.status == "failed" and "stopped 1 times" in failed.last_error


def test_the_celery_task_fails_an_abandoned_delivery_it_carries(db, receiver):
    webhooks.create_endpoint(receiver.url(), ["ping"])
    sent = webhooks.send("ping", {"n": 1})[0]
    for number in range(3):
        die_after_claiming(f"worker-{number}")
    assert delivery.deliver_ids([sent.id], fill=10) == []
    assert row(sent.id).status == "failed"
    assert receiver.requests == []


def test_replay_counts_afresh(db, receiver):
    webhooks.create_endpoint(receiver.url(), ["ping"])
    sent = webhooks.send("ping", {"n": 1})[0]
    for number in range(3):
        die_after_claiming(f"worker-{number}")
    assert delivery.claim(10, "worker-3") == []
    with system_scope():
        replayed = replay.retry_delivery(row(sent.id))
    assert replayed.status == "pending" and replayed.abandoned_claims == 0
    # The cause was fixed: the same delivery may be abandoned again before it is failed.
    die_after_claiming("worker-4")
    assert row(sent.id).abandoned_claims == 0
    die_after_claiming("worker-5")
    assert row(sent.id).abandoned_claims == 1
    run_worker_until_idle()
    assert row(sent.id).status == "delivered" and len(receiver.requests) == 1


@pytest.mark.parametrize("value", [0, -1, "3", 2.5, True, None])
def test_a_bad_limit_is_a_check_error(settings, value):
    settings.BETTER_WEBHOOKS = {**settings.BETTER_WEBHOOKS, "ABANDONED_LIMIT": value}
    assert "better_webhooks.E007" in {message.id for message in check_configuration()}


def test_the_default_limit_passes_the_checks():
    assert "better_webhooks.E007" not in {message.id for message in check_configuration()}


def test_a_poison_deliverys_batch_mates_are_sent_alone_and_are_not_failed_with_it(db, receiver):
    """Deliveries abandoned together are claimed one at a time, so only the poison keeps dying."""
    webhooks.create_endpoint(receiver.url(), ["ping"])
    poison, *healthy = [webhooks.send("ping", {"n": n})[0] for n in range(3)]
    assert len(die_after_claiming("worker-0")) == 3  # the first batch dies with all three
    fresh = webhooks.send("ping", {"n": 99})[0]

    sent_alone: list = []
    for number in range(1, 10):
        claimed = delivery.claim(10, f"worker-{number}")
        if not claimed:
            break
        if any(item.abandoned for item in claimed):
            # An abandoned delivery never shares its batch.
            assert len(claimed) == 1
            sent_alone.append(claimed[0].id)
        if claimed[0].id == poison.id:
            expire_leases()  # it kills this worker too
            continue
        client, _ = delivery.sending_pool(1)
        try:
            delivery.deliver_batch(claimed, f"worker-{number}", client)
        finally:
            client.close()

    assert row(poison.id).status == "failed"
    assert {row(item.id).status for item in healthy} == {"delivered"}
    assert row(fresh.id).status == "delivered" and row(fresh.id).abandoned_claims == 0
    assert set(sent_alone) >= {item.id for item in healthy}
    # Each healthy delivery was received once, after its batch-mate stopped being a danger.
    delivered = [request.headers["webhook-id"] for request in receiver.requests]
    assert sorted(delivered) == sorted([*(item.message_id for item in healthy), fresh.message_id])
