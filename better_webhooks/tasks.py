"""Celery tasks: one delivery per task after commit, and a periodic sweep of due deliveries."""

from __future__ import annotations

import os
import socket
from typing import Any

from celery import shared_task
from django.utils import timezone


def _worker_id(task: Any) -> str:
    return f"celery:{socket.gethostname()}:{os.getpid()}:{task.request.id}"


@shared_task(bind=True, name="better_webhooks.deliver", ignore_result=True)
def deliver(self: Any, delivery_id: str) -> str | None:
    """Attempt one delivery; a retry is published again with the backoff as countdown.

    The claim makes the task safe to run twice or alongside the polling worker: a delivery that
    is not due, or is held by someone else, is skipped. Returns the delivery's new status.
    """
    from better_webhooks import delivery
    from better_webhooks.sending import celery_enabled

    outcome = delivery.deliver_now(delivery_id, _worker_id(self))
    if outcome is None:
        return None
    if outcome.status == "pending" and outcome.next_attempt_at and celery_enabled():
        wait = max(0.0, (outcome.next_attempt_at - timezone.now()).total_seconds())
        deliver.apply_async((delivery_id,), countdown=wait)
    return outcome.status


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
