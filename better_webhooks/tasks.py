"""Celery tasks: one task per batch of deliveries after commit, and a periodic sweep of due ones."""

from __future__ import annotations

import logging
import os
import socket
from datetime import datetime
from functools import partial
from typing import Any

from celery import shared_task
from django.db import transaction
from django.utils import timezone

logger = logging.getLogger(__name__)

#: A retry group spans at most this share of its first member's wait (at least one second), so
#: one task carries retries due close together without holding early ones back for long.
RETRY_GROUP_SPREAD = 0.1
#: Published countdowns end this much after the retry is due, so the claim finds it due.
COUNTDOWN_MARGIN = 0.05


def _worker_id(task: Any) -> str:
    return f"celery:{socket.gethostname()}:{os.getpid()}:{task.request.id}"


def retry_groups(due: list[tuple[Any, datetime]], now: datetime) -> list[tuple[float, list[Any]]]:
    """Group (id, next attempt) pairs into (countdown, ids) tasks: each group's countdown is its
    latest member's wait, and a group spans at most ``RETRY_GROUP_SPREAD`` of its first wait."""
    groups: list[tuple[float, list[Any]]] = []
    start = latest = 0.0
    ids: list[Any] = []
    for delivery_id, at in sorted(due, key=lambda pair: pair[1]):
        wait = max(0.0, (at - now).total_seconds())
        if ids and wait - start > max(1.0, start * RETRY_GROUP_SPREAD):
            groups.append((latest + COUNTDOWN_MARGIN, ids))
            ids = []
        if not ids:
            start = wait
        ids.append(delivery_id)
        latest = wait
    if ids:
        groups.append((latest + COUNTDOWN_MARGIN, ids))
    return groups


@shared_task(bind=True, name="better_webhooks.deliver", ignore_result=True)
def deliver(self: Any, delivery_ids: list[str] | str) -> dict[str, int]:
    """Claim, send and record a batch of deliveries; retries are published again as tasks whose
    countdown ends when they are due. Returns how many ended in each status.

    The claim makes the task safe to run twice or alongside the polling worker: a delivery that
    is not due, or is held by someone else, is skipped. A batch shorter than
    ``WORKER_BATCH_SIZE`` is topped up with other due first attempts (``deliver_ids(fill=...)``),
    so a task may send deliveries that other tasks carry. Deliveries the lease had no room left
    for are released unsent and published again at once. A single id (the payload of earlier
    versions) is accepted too.
    """
    from better_webhooks import db, delivery
    from better_webhooks.conf import webhook_settings
    from better_webhooks.sending import celery_enabled, dispatch

    ids = [delivery_ids] if isinstance(delivery_ids, str) else list(delivery_ids)
    # A short batch is topped up with other due first attempts: under load, when every commit
    # publishes a few ids, the first tasks send the backlog in full batches and the rest find
    # their ids taken, instead of each paying a claim, a recording and a round of POSTs.
    fill = max(1, int(webhook_settings.WORKER_BATCH_SIZE))
    outcomes = delivery.deliver_ids(ids, _worker_id(self), fill=fill)
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    retries = [
        (outcome.claimed.id, outcome.next_attempt_at)
        for outcome in outcomes
        if outcome.status == "pending" and outcome.next_attempt_at is not None
    ]
    # The task may run inside a transaction (a tenant's task scope): the outcomes are recorded
    # when it commits, so the tasks that follow them are published only then.
    publish = partial(transaction.on_commit, using=db.alias())
    if retries and celery_enabled():
        for countdown, group in retry_groups(retries, timezone.now()):
            publish(partial(dispatch, group, countdown=countdown))
    released = [outcome.claimed.id for outcome in outcomes if outcome.status == "released"]
    if released and celery_enabled():
        if len(released) < len(outcomes):
            publish(partial(dispatch, released))
        else:
            # Not even the first attempts fit in the lease (better_webhooks.W003): publishing
            # them again would only repeat this. They stay due for deliver_due or a poller.
            logger.error(
                "%d webhook deliveries were released unsent: LEASE_SECONDS is shorter than one "
                "attempt needs (run `manage.py check`).",
                len(released),
            )
    return counts


@shared_task(bind=True, name="better_webhooks.deliver_due", ignore_result=True)
def deliver_due(self: Any, limit: int | None = None) -> int:
    """Claim and send one batch of due deliveries (for Celery beat, as a safety net for retries
    whose countdown the broker lost); returns how many were attempted."""
    from better_webhooks.worker import Worker

    worker = Worker(batch_size=limit, worker_id=_worker_id(self))
    try:
        return worker.run_once()
    finally:
        worker.close()
