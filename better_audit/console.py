"""Console product ``audit``: the trail paged both ways, an entry, statistics, rules, export, purge.

Served at ``/.well-known/better/audit/`` by better_console, as the published audit server serves
it:

- ``GET /logs`` (read): ``{"entries", "hasNextPage", "nextCursor"?, "prevCursor"?,
  "hasPrevPage"?}``, newest first. Filters: ``tableName`` (table or ``app_label.Model``),
  ``recordId`` (with ``tableName``), ``actorId`` and ``severity`` (comma-separated, any of),
  ``operation``, ``compliance`` (a tag), ``search`` (label or description), ``since`` and
  ``until`` (ISO 8601, both inclusive). Paging: ``limit`` (1-1000, larger is capped; a page holds
  at most PAGE_LIMIT), ``cursor`` with ``direction=after`` (older, the default) or ``before``
  (newer), or ``order=asc|desc``; ``around=<id>`` centres a page on one entry.
- ``GET /logs/:id`` (read): one entry.
- ``GET /stats`` (read): ``{"totalLogs", "tablesAudited", "eventsPerDay", "topActors",
  "topTables", "operationBreakdown", "severityBreakdown"}`` between ``since`` (inclusive) and
  ``until`` (exclusive), all time by default.
- ``GET /enrichments`` (read): the enrichment rules, ``[{"table", "operation", "label"?, ...}]``.
- ``GET /export`` (read): the filtered entries as a download, ``format`` ``csv`` (the default) or
  ``json`` (an array), newest first unless ``order=asc``, the first ``limit`` of them if given.
- ``DELETE /logs`` (admin): ``{"before", "tableName"?}`` purges older entries through the trail's
  privileged path (sealed first, each batch anchored); answers ``{"deletedCount"}``.

An entry is camelCase (``tableName``, ``recordId``, ``actorId``, ``beforeData``, ...; ``diff`` is
``{"changedFields"}``); an empty column is left out, and the row snapshots keep their own column
names. Beyond the published server: every read endpoint takes ``tenantId`` to read one tenant's
trail (it runs as that tenant, so row-level security narrows it; ``DELETE /logs`` refuses it);
entries carry ``correlationId`` and ``tenantId``; ``since`` also takes a duration back from now
(``24h``, ``7d``); ``operation`` takes a comma-separated list; an export without ``limit`` holds
every filtered entry (the published server stops at 1000) and carries the trail's chain head in the
``X-Audit-Chain-Head`` header; bad filters, cursors and ids answer 400 where the published server
fails with a 500.

It also registers the ``audit`` section of the console dashboard (``audit_summary``, with the
chart of events per day below the figures).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from django.db.models import Count, Q, QuerySet
from django.db.models.functions import TruncDate
from django.http import StreamingHttpResponse
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from better_audit.exports import export_response
from better_audit.models import AuditLog
from better_audit.queries import AuditQuery, max_query_limit, query
from better_audit.sql import COLUMNS
from better_audit.statistics import events_per_day, stats
from better_console.dashboard import DashboardWindow, changelist_url, register_section
from better_console.exceptions import ConsoleError
from better_console.products import (
    MAX_LIMIT,
    PAGE_LIMIT,
    bad_request,
    camelize,
    console_scope,
    fields_json,
    parse_instant,
    parse_limit,
    parse_uuid,
    path_id,
    tenant_param,
    without_nulls,
)
from better_console.registry import ConsoleRequest, ConsoleResponse, Endpoint, register_product
from better_core.durations import iso_millis, parse_since

if TYPE_CHECKING:
    from django.contrib.admin import AdminSite
    from django.http import HttpRequest

# Every column but the diff, whose keys are camelised on their own (see entry_json).
FIELDS = tuple(column for column in COLUMNS if column != "diff")
MAX_PARAM = 1000
LONG_CHECKED = (
    "tableName",
    "recordId",
    "actorId",
    "cursor",
    "operation",
    "severity",
    "compliance",
    "search",
    "around",
    "direction",
    "order",
)
ENRICHMENT_OPTIONS = ("label", "severity", "compliance", "notify", "redact", "include")
# Top actors and tables listed by /stats, and the most days it lists.
TOP = 10
STATS_DAYS = 365


def entry_json(entry: AuditLog) -> dict[str, Any]:
    body = fields_json(entry, FIELDS)
    body["timestamp"] = iso_millis(entry.timestamp)
    # The diff's keys are the suite's own (changed_fields), unlike the row snapshots' columns.
    body["diff"] = camelize(entry.diff) if entry.diff is not None else None
    return without_nulls(body)


def _query(request: ConsoleRequest) -> dict[str, str]:
    query_params = request.query or {}
    if any(len(query_params.get(name) or "") > MAX_PARAM for name in LONG_CHECKED):
        raise bad_request("Query parameter exceeds maximum length", "INVALID_FILTER")
    if any("\x00" in value for value in query_params.values()):
        # PostgreSQL text cannot hold U+0000: a 400 here, not a failed query.
        raise bad_request("A query parameter holds a NUL character (%00).", "INVALID_FILTER")
    return query_params


def _instant(query_params: dict[str, str], name: str, *, durations: bool = False) -> Any:
    text = query_params.get(name)
    if text is None:
        return None
    moment = parse_instant(text) if text.strip() else None
    if moment is None and durations:
        try:
            moment = parse_since(text.strip())
        except ValueError:
            moment = None
    if moment is None:
        raise bad_request(f"Invalid '{name}': must be an ISO-8601 date", "INVALID_FILTER")
    return moment


def _csv(text: str | None) -> list[str]:
    return list(dict.fromkeys(v.strip() for v in (text or "").split(",") if v.strip()))


class Filters:
    """The filters, limit and paging options of ``/logs`` and ``/export``, checked."""

    def __init__(self, request: ConsoleRequest) -> None:
        q = self.query_params = _query(request)
        self.limit: int | None = parse_limit(request, default=None)
        if q.get("recordId") is not None and q.get("tableName") is None:
            raise bad_request("'recordId' requires 'tableName'", "INVALID_FILTER")
        self.direction = q.get("direction")
        if self.direction is not None and self.direction not in ("after", "before"):
            raise bad_request("Invalid 'direction': must be 'after' or 'before'", "INVALID_FILTER")
        self.order = q.get("order")
        if self.order is not None and self.order not in ("asc", "desc"):
            raise bad_request("Invalid 'order': must be 'asc' or 'desc'", "INVALID_FILTER")
        self.since = _instant(q, "since", durations=True)
        self.until = _instant(q, "until")
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise bad_request("'since' must be before 'until'", "INVALID_FILTER")
        self.cursor = q.get("cursor")
        self.audit_query = self._filtered()

    @property
    def queryset(self) -> QuerySet:
        return self.audit_query.queryset

    def _filtered(self) -> AuditQuery:
        q, built = self.query_params, query()
        try:
            # An empty table, record or tag is matched as a value, as the published server does.
            if (table := q.get("tableName")) is not None:
                built = built.resource(table) if table else built.where(Q(table_name=""))
            if (record := q.get("recordId")) is not None:
                built = built.record(record) if record else built.where(Q(record_id=""))
            if q.get("operation") is not None:
                # No operation at all is refused (the published server fails on it).
                built = built.operation(*_csv(q["operation"]))
            if severities := _csv(q.get("severity")):
                built = built.severity(*severities)
            if (tag := q.get("compliance")) is not None:
                built = built.compliance(tag) if tag else built.where(Q(compliance__contains=[""]))
            if (text := q.get("search")) and text.strip():
                built = built.search(text)
        except ValueError as exc:
            raise bad_request(str(exc), "INVALID_FILTER") from exc
        if actors := _csv(q.get("actorId")):
            built = built.where(Q(actor_id__in=actors))
        if self.since is not None:
            built = built.where(Q(timestamp__gte=self.since))
        if self.until is not None:
            built = built.where(Q(timestamp__lte=self.until))
        return built

    @property
    def effective_limit(self) -> int:
        ceiling = min(MAX_LIMIT, max_query_limit())
        return min(self.limit if self.limit is not None else ceiling, ceiling)


# --- cursors --------------------------------------------------------------------------------------


def encode_cursor(entry: AuditLog) -> str:
    """Base64 JSON ``{"t": time, "i": id}``, the published servers' cursor, to the microsecond."""
    moment = entry.timestamp.astimezone(UTC).isoformat().replace("+00:00", "Z")
    payload = json.dumps({"t": moment, "i": str(entry.id)}, separators=(",", ":"))
    return base64.b64encode(payload.encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = json.loads(base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_"))
        moment = parse_instant(raw["t"])
        entry_id = uuid.UUID(raw["i"])
    except (binascii.Error, ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError):
        pass
    else:
        if moment is not None:
            return moment, entry_id
    raise bad_request(
        "Invalid cursor: pass nextCursor or prevCursor back unchanged.", "INVALID_CURSOR"
    )


def _page(qs: QuerySet, order: str, cursor: str | None, limit: int) -> tuple[list[Any], bool]:
    """Up to ``limit`` entries of ``qs`` in ``order`` past ``cursor``, and whether more follow."""
    limit = min(limit, PAGE_LIMIT)
    if cursor is not None:
        moment, entry_id = decode_cursor(cursor)
        op = "gt" if order == "asc" else "lt"
        qs = qs.filter(
            Q(**{f"timestamp__{op}": moment}) | Q(timestamp=moment, **{f"id__{op}": entry_id})
        )
    keys = ("timestamp", "id") if order == "asc" else ("-timestamp", "-id")
    rows = list(qs.order_by(*keys)[: limit + 1])
    return rows[:limit], len(rows) > limit


def _around(filters: Filters, anchor_id: str) -> dict[str, Any]:
    anchor = AuditLog.objects.filter(pk=parse_uuid(anchor_id, "around")).first()
    if anchor is None:
        return {"entries": [], "hasNextPage": False}
    remaining = max(filters.effective_limit - 1, 0)
    cursor = encode_cursor(anchor)
    older, more_older = _page(filters.queryset, "desc", cursor, math.ceil(remaining / 2))
    newer, more_newer = _page(filters.queryset, "asc", cursor, remaining // 2)
    entries = [*reversed(newer), anchor, *older]
    body: dict[str, Any] = {"entries": entries, "hasNextPage": more_older}
    if more_older:
        body["nextCursor"] = encode_cursor(entries[-1])
    if more_newer:
        body["prevCursor"] = encode_cursor(entries[0])
        body["hasPrevPage"] = True
    return body


def _pages(filters: Filters) -> dict[str, Any]:
    before = filters.direction == "before"
    order = filters.order or ("asc" if before else "desc")
    entries, more = _page(filters.queryset, order, filters.cursor, filters.effective_limit)
    from_cursor = filters.cursor is not None
    body: dict[str, Any]
    if before:
        # Read upwards from the cursor, shown newest first: what lies further up is the
        # previous page, and the cursor itself proves a next one.
        entries.reverse()
        body = {"entries": entries, "hasNextPage": from_cursor}
        if from_cursor and entries:
            body["nextCursor"] = encode_cursor(entries[-1])
        if more:
            body["prevCursor"] = encode_cursor(entries[0])
            body["hasPrevPage"] = True
        return body
    body = {"entries": entries, "hasNextPage": more}
    if more:
        body["nextCursor"] = encode_cursor(entries[-1])
    if from_cursor and entries:
        body["prevCursor"] = encode_cursor(entries[0])
    if from_cursor:
        body["hasPrevPage"] = True
    return body


# --- endpoints ------------------------------------------------------------------------------------


def list_logs(request: ConsoleRequest) -> ConsoleResponse:
    tenant_id = tenant_param(request)
    filters = Filters(request)
    if filters.order is not None and filters.direction is not None:
        raise bad_request("'order' cannot be combined with 'direction'", "INVALID_FILTER")
    around = filters.query_params.get("around")
    if around is not None and (
        filters.cursor is not None or filters.direction is not None or filters.order is not None
    ):
        raise bad_request(
            "'around' cannot be combined with 'cursor', 'direction', or 'order'", "INVALID_FILTER"
        )
    with console_scope(tenant_id):
        body = _around(filters, around) if around is not None else _pages(filters)
        body["entries"] = [entry_json(entry) for entry in body["entries"]]
    return ConsoleResponse(body=body)


def get_log(request: ConsoleRequest) -> ConsoleResponse:
    entry_id = path_id(request)
    with console_scope(tenant_param(request)):
        entry = AuditLog.objects.filter(pk=entry_id).first()
    if entry is None:
        raise ConsoleError("Audit log not found", status=404, code="NOT_FOUND")
    return ConsoleResponse(body=entry_json(entry))


def get_stats(request: ConsoleRequest) -> ConsoleResponse:
    tenant_id = tenant_param(request)
    query_params = request.query or {}
    if any(len(query_params.get(name) or "") > MAX_PARAM for name in ("since", "until")):
        raise bad_request("Query parameter exceeds maximum length", "INVALID_FILTER")
    since = _instant(query_params, "since")
    until = _instant(query_params, "until")
    if since is not None and until is not None and since >= until:
        raise bad_request("'since' must be before 'until'", "INVALID_FILTER")
    with console_scope(tenant_id):
        result = stats(days=None, top=TOP, since=since, until=until)
        days = _days_with_entries(since, until)
    # Only what occurred: days, operations and severities without entries are left out.
    return ConsoleResponse(
        body={
            "totalLogs": result["total_logs"],
            "tablesAudited": result["tables_audited"],
            "eventsPerDay": days,
            "topActors": camelize(result["top_actors"]),
            "topTables": camelize(result["top_tables"]),
            "operationBreakdown": {k: n for k, n in result["operation_breakdown"].items() if n},
            "severityBreakdown": {k: n for k, n in result["severity_breakdown"].items() if n},
        }
    )


def _days_with_entries(since: datetime | None, until: datetime | None) -> list[dict[str, Any]]:
    """``[{"date", "count"}]`` of the UTC days with entries from ``since`` to before ``until``,
    oldest first, at most STATS_DAYS of them, as the published storage lists them (however long
    ago: stats() lists only the last year's days)."""
    qs = AuditLog.objects.all()
    if since is not None:
        qs = qs.filter(timestamp__gte=since)
    if until is not None:
        qs = qs.filter(timestamp__lt=until)
    rows = (
        qs.annotate(day=TruncDate("timestamp", tzinfo=UTC))
        .order_by()
        .values("day")
        .annotate(count=Count("*"))
        .order_by("day")[:STATS_DAYS]
    )
    return [{"date": row["day"].isoformat(), "count": row["count"]} for row in rows]


def enrichments(request: ConsoleRequest) -> ConsoleResponse:
    from better_audit.enrichment import registry

    body = []
    for table, operation, rule in registry.rules():
        summary: dict[str, Any] = {"table": table, "operation": operation}
        for name in ENRICHMENT_OPTIONS:
            value = getattr(rule, name)
            if value is not None and value != ():
                summary[name] = list(value) if isinstance(value, tuple) else value
        body.append(summary)
    return ConsoleResponse(body=body)


def export(request: ConsoleRequest) -> StreamingHttpResponse:
    tenant_id = tenant_param(request)
    chosen = (request.query or {}).get("format")
    if chosen is not None and chosen not in ("csv", "json"):
        raise bad_request("Invalid format. Must be 'csv' or 'json'", "INVALID_FILTER")
    filters = Filters(request)
    order = filters.order or ("asc" if filters.direction == "before" else "desc")
    q = filters.audit_query.order(order)
    fmt = chosen or "csv"
    filename = f"audit-export-{timezone.now().date().isoformat()}"
    with console_scope(tenant_id):
        response = export_response(fmt, q, filename, naming="camel", max_rows=filters.limit)
    response["Cache-Control"] = "no-cache"
    return response


def purge(request: ConsoleRequest) -> ConsoleResponse:
    from better_audit.integrity import purge as purge_entries

    if tenant_param(request) is not None:
        # The purge deletes in the privileged role, which row-level security does not narrow:
        # run "as a tenant" it would still delete every tenant's entries.
        raise bad_request(
            "DELETE /logs purges every tenant's trail; leave tenantId out.", "INVALID_FILTER"
        )
    body = request.body
    if not isinstance(body, dict):
        raise bad_request("Request body is required", "INVALID_BODY")
    before_text = body.get("before")
    if not isinstance(before_text, str):
        raise bad_request("Missing required field: before", "INVALID_BODY")
    before = parse_instant(before_text) if before_text.strip() else None
    if before is None:
        raise bad_request("Invalid date for 'before' field", "INVALID_BODY")
    table = body.get("tableName")
    tables = None
    if isinstance(table, str) and table:
        if len(table) > MAX_PARAM:
            raise bad_request("tableName exceeds maximum length", "INVALID_BODY")
        if "\x00" in table:
            # PostgreSQL text cannot hold U+0000: a 400 here, not a failed query.
            raise bad_request("tableName holds a NUL character.", "INVALID_BODY")
        tables = [table]
    with console_scope():
        deleted = purge_entries(before, tables=tables)
    return ConsoleResponse(body={"deletedCount": deleted})


ENDPOINTS = (
    Endpoint("GET", "/logs", list_logs, "read"),
    Endpoint("GET", "/logs/:id", get_log, "read"),
    Endpoint("GET", "/stats", get_stats, "read"),
    Endpoint("GET", "/enrichments", enrichments, "read"),
    Endpoint("GET", "/export", export, "read"),
    Endpoint("DELETE", "/logs", purge, "admin"),
)


# --- the console dashboard's section ------------------------------------------------------------


def audit_summary(first: date, last: date, using: str | None = None) -> dict[str, Any]:
    """``{"total", "peak", "per_day": [{"date", "count"}]}``, days of the window, oldest first."""
    qs = AuditLog.objects.using(using) if using else AuditLog.objects.all()
    rows = events_per_day(qs, first, last)
    return {
        "total": sum(row["count"] for row in rows),
        "peak": max((row["count"] for row in rows), default=0),
        "per_day": rows,
    }


def dashboard_figures(window: DashboardWindow) -> dict[str, Any]:
    return audit_summary(window.first, window.last, window.using)


def dashboard_context(
    site: AdminSite, request: HttpRequest, figures: Mapping[str, Any]
) -> dict[str, Any]:
    """The figures with links to the trail and its dashboard, and the chart of events per day."""
    # The admin module registers AuditLog with the default site: imported once the admin runs.
    from better_audit.admin import events_chart

    url = changelist_url(site, request, "better_audit.AuditLog")
    dashboard_url = None
    if url is not None:
        try:
            dashboard_url = reverse(f"{site.name}:better_audit_auditlog_dashboard")
        except NoReverseMatch:
            dashboard_url = None
    return {
        **figures,
        "url": url,
        "dashboard_url": dashboard_url,
        "chart": events_chart(figures["per_day"]),
    }


def register() -> None:
    """Register (or re-register) the ``audit`` product and its dashboard section."""
    register_product("audit", "Audit log", ENDPOINTS, replace=True)
    register_section(
        "audit",
        order=20,
        figures=dashboard_figures,
        template="admin/better_audit/dashboard_section.html",
        wide_template="admin/better_audit/dashboard_chart.html",
        admin_context=dashboard_context,
        replace=True,
    )
