"""better_webhooks.replay: the one requeue used by the command, the API and the admin."""

from __future__ import annotations

from django.db import connection

import better_webhooks as webhooks
from better_webhooks import replay, tasks
from better_webhooks.conf import webhook_settings
from better_webhooks.db import system_scope
from better_webhooks.models import WebhookDelivery
from tests.support.webhooks import run_worker_until_idle


def test_requeue_gives_a_fresh_set_of_attempts_and_publishes_after_commit(
    db, settings, monkeypatch, receiver
):
    first, _ = webhooks.create_endpoint(receiver.url("/a"), ["ping"])
    webhooks.create_endpoint(receiver.url("/b"), ["ping"])
    webhooks.send("ping", {"n": 1})
    with system_scope():
        WebhookDelivery.objects.filter(endpoint=first).update(status="failed", attempts=4)
        WebhookDelivery.objects.exclude(endpoint=first).update(status="delivered", attempts=1)
        webhooks.send("ping", {"n": 2})  # two pending deliveries: left alone
    settings.BETTER_WEBHOOKS = {**settings.BETTER_WEBHOOKS, "CELERY": True}
    published = []
    monkeypatch.setattr(
        tasks.deliver, "apply_async", lambda args, **options: published.append(args[0])
    )
    connection.run_on_commit.clear()
    with system_scope():
        ids = replay.requeue(WebhookDelivery.objects.all())
        rows = {row.pk: row for row in WebhookDelivery.objects.filter(pk__in=ids)}
    assert len(ids) == 2 and published == []
    for row in rows.values():
        assert row.status == "pending" and row.delivered_at is None
        assert row.max_attempts == row.attempts + webhook_settings.MAX_ATTEMPTS
    assert sorted(row.attempts for row in rows.values()) == [1, 4]
    for _, callback, _ in connection.run_on_commit:
        callback()
    connection.run_on_commit.clear()
    # One task for the requeued deliveries, not one per delivery.
    assert [sorted(batch) for batch in published] == [sorted(str(i) for i in ids)]


def test_recover_failed_filters_by_endpoint_and_event(db, receiver):
    first, _ = webhooks.create_endpoint(receiver.url("/a"), ["ping", "user.created"])
    webhooks.create_endpoint(receiver.url("/b"), ["ping"])
    webhooks.send("ping", {"n": 1})
    webhooks.send("user.created", {"id": "usr_1", "email": "a@example.com"})
    with system_scope():
        WebhookDelivery.objects.update(status="failed", attempts=5)
        assert replay.recover_failed(None, endpoint_id=first.id, event="ping") == 1
        assert WebhookDelivery.objects.get(status="pending").endpoint_id == first.id
        assert replay.recover_failed(None) == 2
    run_worker_until_idle()
    with system_scope():
        assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {"delivered"}
        assert set(WebhookDelivery.objects.values_list("attempts", flat=True)) == {6}
