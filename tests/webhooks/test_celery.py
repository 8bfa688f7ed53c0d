"""The Celery path: one task per batch of deliveries, claimed together, retries re-published."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

import better_webhooks as webhooks
from better_webhooks import delivery, tasks
from better_webhooks.client import Client
from better_webhooks.db import system_scope
from better_webhooks.models import WebhookDelivery, WebhookDeliveryAttempt


@pytest.fixture
def published(settings, monkeypatch):
    """Celery on, with the tasks it would publish collected as (ids, options)."""
    settings.BETTER_WEBHOOKS = {**settings.BETTER_WEBHOOKS, "CELERY": True}
    collected: list[tuple[list[str], dict]] = []
    monkeypatch.setattr(
        tasks.deliver,
        "apply_async",
        lambda args, **options: collected.append((args[0], options)),
    )
    return collected


def send_to(receiver, count: int) -> list[WebhookDelivery]:
    for number in range(count):
        webhooks.create_endpoint(receiver.url(f"/{number}"), ["ping"])
    return webhooks.send("ping", {"n": 1})


def test_dispatch_splits_large_batches(db, settings, published):
    from better_webhooks.sending import dispatch

    settings.BETTER_WEBHOOKS = {**settings.BETTER_WEBHOOKS, "WORKER_BATCH_SIZE": 2}
    dispatch(["a", "b", "c", "d", "e"], countdown=3.0)
    assert [ids for ids, _ in published] == [["a", "b"], ["c", "d"], ["e"]]
    assert {options["countdown"] for _, options in published} == {3.0}


def test_task_skips_deliveries_another_worker_holds(db, receiver):
    deliveries = send_to(receiver, 2)
    held = delivery.claim(1, "poller")
    assert len(held) == 1
    result = tasks.deliver.apply(args=[[str(d.id) for d in deliveries]]).get()
    assert result == {"delivered": 1}
    assert len(receiver.requests) == 1
    with system_scope():
        statuses = dict(WebhookDelivery.objects.values_list("id", "status"))
    assert statuses[held[0].id] == "delivering"
    assert sorted(statuses.values()) == ["delivered", "delivering"]
    # The poller's outcome still records: the task did not take its delivery over.
    delivery.deliver_batch(held, "poller", Client())
    with system_scope():
        assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"delivered"}
    assert len(receiver.requests) == 2


def test_task_accepts_a_single_id(db, receiver):
    (sent,) = send_to(receiver, 1)
    assert tasks.deliver.apply(args=[str(sent.id)]).get() == {"delivered": 1}
    assert len(receiver.requests) == 1


def test_retries_are_republished_as_one_task_with_a_countdown(
    db, fast_retries, published, receiver, django_capture_on_commit_callbacks
):
    deliveries = send_to(receiver, 3)
    receiver.answer(500)
    ids = [str(d.id) for d in deliveries]
    with django_capture_on_commit_callbacks() as callbacks:
        assert tasks.deliver.apply(args=[ids]).get() == {"pending": 3}
    # The retry is published once the attempts are recorded (committed), not before.
    assert published == []
    for callback in callbacks:
        callback()
    ((retry_ids, options),) = published
    assert sorted(retry_ids) == sorted(ids)
    # Due 10 ms after the attempt, plus the margin that makes the claim find them due.
    assert tasks.COUNTDOWN_MARGIN <= options["countdown"] <= 0.01 + tasks.COUNTDOWN_MARGIN
    receiver.answer(200)
    time.sleep(options["countdown"])
    assert tasks.deliver.apply(args=[retry_ids]).get() == {"delivered": 3}
    with system_scope():
        attempts = sorted(WebhookDeliveryAttempt.objects.values_list("attempt", flat=True))
    assert attempts == [1, 1, 1, 2, 2, 2]


def test_retry_groups_keep_far_apart_retries_in_separate_tasks():
    now = timezone.now()
    due = [
        ("late", now + timedelta(seconds=3600)),
        ("a", now + timedelta(seconds=5)),
        ("c", now + timedelta(seconds=60)),
        ("b", now + timedelta(seconds=5.5)),
        ("d", now + timedelta(seconds=65)),
    ]
    groups = tasks.retry_groups(due, now)
    assert [ids for _, ids in groups] == [["a", "b"], ["c", "d"], ["late"]]
    margin = tasks.COUNTDOWN_MARGIN
    assert [round(countdown - margin, 3) for countdown, _ in groups] == [5.5, 65.0, 3600.0]


def test_a_short_task_batch_is_topped_up_with_other_due_first_attempts(db, settings, receiver):
    settings.BETTER_WEBHOOKS = {**settings.BETTER_WEBHOOKS, "WORKER_BATCH_SIZE": 5}
    first = send_to(receiver, 2)
    second = webhooks.send("ping", {"n": 2})
    third = webhooks.send("ping", {"n": 3})
    retry, held = third
    with system_scope():
        # A due retry is left to the task that carries it; a held delivery to its holder.
        WebhookDelivery.objects.filter(id=retry.id).update(attempts=1)
        WebhookDelivery.objects.filter(id=held.id).update(
            status="delivering", locked_by="poller", lease_until=timezone.now() + timedelta(60)
        )

    # Two ids of its own, topped up to five: the second send's two and nothing more.
    counts = tasks.deliver.apply(args=[[str(d.id) for d in first]]).get()
    assert counts == {"delivered": 4}
    with system_scope():
        statuses = dict(WebhookDelivery.objects.values_list("id", "status"))
    assert {statuses[d.id] for d in [*first, *second]} == {"delivered"}
    assert statuses[retry.id] == "pending" and statuses[held.id] == "delivering"
    # The task that carried the second send's ids finds them sent and sends nothing again.
    assert tasks.deliver.apply(args=[[str(d.id) for d in second]]).get() == {}
    assert len(receiver.requests) == 4
    assert len({r.headers["webhook-id"] + r.path for r in receiver.requests}) == 4


def test_deliver_ids_sends_only_its_ids_without_fill(db, receiver):
    first = send_to(receiver, 1)
    other = webhooks.send("ping", {"n": 2})
    outcomes = delivery.deliver_ids([d.id for d in first], "test")
    assert [o.claimed.id for o in outcomes] == [first[0].id]
    with system_scope():
        assert set(
            WebhookDelivery.objects.filter(id__in=[d.id for d in other]).values_list(
                "status", flat=True
            )
        ) == {"pending"}
