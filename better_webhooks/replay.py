"""Queue deliveries again: selected ones, one on request, or every failed one since a moment.

A queued-again delivery gets a fresh set of ``MAX_ATTEMPTS`` attempts (its attempt numbers go on
from where they stopped, so the attempt log keeps its history) and its count of abandoned claims
starts again from 0; it goes out after the caller's transaction commits: through Celery when it
is on, else the polling worker claims it.
Queries run in the caller's scope, so row-level security limits them to the tenant in scope;
the management command runs them in system mode.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from better_webhooks import db
from better_webhooks.conf import webhook_settings
from better_webhooks.models import WebhookDelivery

#: Deliveries in these states may be queued again; pending and delivering ones are queued already.
REPLAYABLE = ("failed", "delivered")


def requeue(queryset: QuerySet[WebhookDelivery]) -> list[Any]:
    """Queue the replayable deliveries of ``queryset`` again; return their ids.

    Call it inside a transaction: the rows are locked until it ends, and rows another
    transaction holds are skipped rather than waited for.
    """
    from better_webhooks.sending import dispatch

    ids = list(
        queryset.filter(status__in=REPLAYABLE)
        .select_for_update(skip_locked=True)
        .values_list("id", flat=True)
    )
    if not ids:
        return []
    now = timezone.now()
    queryset.model.objects.using(queryset.db).filter(pk__in=ids).update(
        status="pending",
        next_attempt_at=now,
        max_attempts=F("attempts") + int(webhook_settings.MAX_ATTEMPTS),
        lease_until=None,
        locked_by=None,
        # The operator replays once the cause of the abandonments is fixed: count afresh.
        abandoned_claims=0,
        delivered_at=None,
        updated_at=now,
    )
    transaction.on_commit(lambda: dispatch(ids), using=queryset.db)
    return ids


def failed_deliveries(
    since: datetime | None = None, *, endpoint_id: Any = None, event: str | None = None
) -> QuerySet[WebhookDelivery]:
    """The failed deliveries created at or after ``since`` (any time when None), optionally of
    one endpoint and one event."""
    queryset = WebhookDelivery.objects.using(db.alias()).filter(status="failed")
    if since is not None:
        queryset = queryset.filter(created_at__gte=since)
    if endpoint_id is not None:
        queryset = queryset.filter(endpoint_id=endpoint_id)
    if event is not None:
        queryset = queryset.filter(event=event)
    return queryset


def retry_delivery(delivery: WebhookDelivery) -> WebhookDelivery:
    """Queue one failed or delivered delivery again and return it refreshed."""
    with transaction.atomic(using=db.alias()):
        requeue(WebhookDelivery.objects.using(db.alias()).filter(pk=delivery.pk))
    delivery.refresh_from_db(using=db.alias())
    return delivery


def recover_failed(
    since: datetime | None, *, endpoint_id: Any = None, event: str | None = None
) -> int:
    """Queue again the failed deliveries created at or after ``since`` (any time when None),
    optionally of one endpoint and one event; return how many."""
    with transaction.atomic(using=db.alias()):
        return len(requeue(failed_deliveries(since, endpoint_id=endpoint_id, event=event)))


def replay(ids: Iterable[Any]) -> int:
    """Queue again the given deliveries (the admin's replay action); return how many."""
    with transaction.atomic(using=db.alias()):
        return len(requeue(WebhookDelivery.objects.using(db.alias()).filter(pk__in=list(ids))))
