"""``audit.stats()``: totals, events per day, top actors and tables, operation/severity mixes."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.db.models import Count
from django.db.models.functions import TruncDate
from django.utils import timezone

from better_audit.models import OPERATIONS, SEVERITIES

MAX_DAYS = 365


def stats(
    days: int | None = 30,
    top: int = 10,
    using: str | None = None,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, Any]:
    """Aggregates over the last ``days`` days (1 to 365), or over the whole trail with None;
    ``since`` (inclusive) and ``until`` (exclusive) narrow the window further.

    Returns ``{"days", "since", "total_logs", "tables_audited", "events_per_day": [{"date",
    "count"}], "top_actors": [{"actor_id", "count"}], "top_tables": [{"table_name", "count"}],
    "operation_breakdown": {op: n}, "severity_breakdown": {level: n}}``. Days are UTC dates;
    ``events_per_day`` lists every day of the window (at most its last 365) including empty ones,
    oldest first. Entries without an actor are left out of ``top_actors``, entries without a
    severity out of ``severity_breakdown``. Reads in the caller's tenant scope, in three queries.
    """
    if days is not None and (isinstance(days, bool) or not isinstance(days, int)):
        raise ValueError(f"days must be a whole number from 1 to {MAX_DAYS} or None; got {days!r}.")
    if days is not None and not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days must be from 1 to {MAX_DAYS} (or None for all time); got {days}.")
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ValueError(f"top must be a whole number of at least 1; got {top!r}.")
    from better_audit.models import AuditLog

    for name, value in (("since", since), ("until", until)):
        if value is not None and (not isinstance(value, datetime) or timezone.is_naive(value)):
            raise ValueError(f"{name} must be a timezone-aware datetime; got {value!r}.")
    now = timezone.now()
    today = now.astimezone(UTC).date()
    window_days = days or MAX_DAYS
    first_day = today - timedelta(days=window_days - 1)
    window_start = datetime(first_day.year, first_day.month, first_day.day, tzinfo=UTC)
    qs = AuditLog.objects.all()
    if using:
        qs = qs.using(using)
    scoped = qs.filter(timestamp__gte=window_start) if days is not None else qs
    if days is None:
        # All time: the days listed end where the window ends (at ``until``), not today.
        first_day = date.min
    last_day = today
    if since is not None:
        scoped = scoped.filter(timestamp__gte=since)
        first_day = (
            since.astimezone(UTC).date()
            if days is None
            else max(first_day, since.astimezone(UTC).date())
        )
    if until is not None:
        scoped = scoped.filter(timestamp__lt=until)
        last_day = min(today, (until - timedelta(microseconds=1)).astimezone(UTC).date())
    first_day = max(first_day, last_day - timedelta(days=MAX_DAYS - 1))

    # One grouped scan gives the total, the table count and both breakdowns.
    groups = scoped.order_by().values_list("table_name", "operation", "severity")
    groups = groups.annotate(n=Count("*"))
    total = 0
    tables: dict[str, int] = {}
    operations = dict.fromkeys(OPERATIONS, 0)
    severities = dict.fromkeys(SEVERITIES, 0)
    # annotate() adds n to each values_list() row; the stubs' row type stops at the three names.
    for table_name, operation, severity, n in groups:  # type: ignore[misc]
        total += n
        tables[table_name] = tables.get(table_name, 0) + n
        operations[operation] = operations.get(operation, 0) + n
        if severity is not None:
            severities[severity] = severities.get(severity, 0) + n

    actors = (
        scoped.filter(actor_id__isnull=False)
        .order_by()
        .values("actor_id")
        .annotate(count=Count("*"))
        .order_by("-count", "actor_id")[:top]
    )
    top_tables = sorted(tables.items(), key=lambda item: (-item[1], item[0]))[:top]
    return {
        "days": days,
        "since": window_start.isoformat() if days is not None else None,
        "total_logs": total,
        "tables_audited": len(tables),
        "events_per_day": events_per_day(scoped, first_day, last_day),
        "top_actors": [{"actor_id": row["actor_id"], "count": row["count"]} for row in actors],
        "top_tables": [{"table_name": name, "count": n} for name, n in top_tables],
        "operation_breakdown": operations,
        "severity_breakdown": severities,
    }


def events_per_day(queryset: Any, first: date, last: date) -> list[dict[str, Any]]:
    """``[{"date", "count"}]`` of ``queryset``'s entries for every UTC day from ``first`` to
    ``last``, empty days included, oldest first (one grouped query)."""
    since = datetime(first.year, first.month, first.day, tzinfo=UTC)
    per_day = dict(
        queryset.filter(timestamp__gte=since)
        .annotate(day=TruncDate("timestamp", tzinfo=UTC))
        .order_by()
        .values_list("day")
        .annotate(n=Count("*"))
        .values_list("day", "n")
    )
    days = (first + timedelta(days=n) for n in range((last - first).days + 1))
    return [{"date": day.isoformat(), "count": per_day.get(day, 0)} for day in days]
