"""The figures of the console dashboard: tenants, audit events per day, webhooks and mail.

``dashboard_data(days)`` reads every tenant's rows (system mode when better_tenant is installed)
and returns one section per installed app, or None for an app that is not installed. The window is
the last ``days`` UTC days, today included, as in ``audit.stats()``. Each section costs one grouped
query; the tenant count is bounded like the admin's paginator (exact up to ``EXACT_COUNT_LIMIT``
rows, the planner's estimate above).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.apps import apps
from django.db.models import Count
from django.utils import timezone

from better_core.admin import EXACT_COUNT_LIMIT, EstimatedCountPaginator
from better_core.tenancy import system_scope

DEFAULT_DAYS = 30
MAX_DAYS = 365


def window(days: int, now: datetime | None = None) -> tuple[date, date, datetime]:
    """The first and last UTC day of a ``days``-day window ending today, and its start instant."""
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days must be a whole number from 1 to {MAX_DAYS}; got {days!r}.")
    today = (now or timezone.now()).astimezone(UTC).date()
    first = today - timedelta(days=days - 1)
    return first, today, datetime(first.year, first.month, first.day, tzinfo=UTC)


def dashboard_data(days: int = DEFAULT_DAYS, using: str | None = None) -> dict[str, Any]:
    """Every section of the dashboard over the last ``days`` days, across all tenants.

    Returns ``{"days", "since", "tenants", "audit", "webhooks", "mail"}``; a section is None when
    its app is not installed. See ``tenant_summary``, ``audit_summary``, ``webhook_summary`` and
    ``mail_summary`` for the shape of each.
    """
    first, last, since = window(days)
    with system_scope(using):
        return {
            "days": days,
            "since": since.isoformat(),
            "tenants": tenant_summary(using) if apps.is_installed("better_tenant") else None,
            "audit": (
                audit_summary(first, last, using) if apps.is_installed("better_audit") else None
            ),
            "webhooks": (
                webhook_summary(since, using) if apps.is_installed("better_webhooks") else None
            ),
            "mail": mail_summary(since, using) if apps.is_installed("better_mail") else None,
        }


def tenant_summary(using: str | None = None) -> dict[str, Any]:
    """``{"count", "estimated"}``: how many tenants, and whether the figure is an estimate."""
    from better_tenant.models import Tenant

    qs = Tenant.objects.using(using) if using else Tenant.objects.all()
    count = EstimatedCountPaginator(qs, per_page=1).count
    return {"count": count, "estimated": count > EXACT_COUNT_LIMIT}


def audit_summary(first: date, last: date, using: str | None = None) -> dict[str, Any]:
    """``{"total", "peak", "per_day": [{"date", "count"}]}``, days of the window, oldest first."""
    from better_audit.models import AuditLog
    from better_audit.statistics import events_per_day

    qs = AuditLog.objects.using(using) if using else AuditLog.objects.all()
    rows = events_per_day(qs, first, last)
    return {
        "total": sum(row["count"] for row in rows),
        "peak": max((row["count"] for row in rows), default=0),
        "per_day": rows,
    }


def webhook_summary(since: datetime, using: str | None = None) -> dict[str, Any]:
    """Deliveries created in the window by status, the success rate, and endpoints by status.

    ``{"statuses": {status: n}, "total", "finished", "success_rate", "endpoints": {status: n}}``:
    ``finished`` counts delivered and failed deliveries (pending and in-flight ones have no
    outcome yet) and ``success_rate`` is delivered / finished, a float from 0 to 1, or None when
    nothing finished.
    """
    from better_webhooks.models import (
        DELIVERY_STATUSES,
        ENDPOINT_STATUSES,
        WebhookDelivery,
        WebhookEndpoint,
    )

    deliveries = WebhookDelivery.objects.using(using) if using else WebhookDelivery.objects.all()
    endpoints = WebhookEndpoint.objects.using(using) if using else WebhookEndpoint.objects.all()
    statuses = dict.fromkeys(DELIVERY_STATUSES, 0)
    statuses.update(_by_status(deliveries.filter(created_at__gte=since)))
    endpoint_counts = dict.fromkeys(ENDPOINT_STATUSES, 0)
    endpoint_counts.update(_by_status(endpoints))
    finished = statuses["delivered"] + statuses["failed"]
    return {
        "statuses": statuses,
        "total": sum(statuses.values()),
        "finished": finished,
        "success_rate": statuses["delivered"] / finished if finished else None,
        "endpoints": endpoint_counts,
    }


def mail_summary(since: datetime, using: str | None = None) -> dict[str, Any]:
    """``{"statuses": {status: n}, "total"}`` over mails created in the window; all statuses."""
    from better_mail.models import MailLog, MailStatus

    qs = MailLog.objects.using(using) if using else MailLog.objects.all()
    statuses = dict.fromkeys(MailStatus.values, 0)
    statuses.update(_by_status(qs.filter(created_at__gte=since)))
    return {"statuses": statuses, "total": sum(statuses.values())}


def _by_status(qs: Any) -> dict[str, int]:
    return dict(
        qs.order_by().values_list("status").annotate(n=Count("*")).values_list("status", "n")
    )
