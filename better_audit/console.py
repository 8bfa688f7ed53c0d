"""Console product ``audit``: the audit trail, one entry, the dashboard statistics and exports.

Served at ``/.well-known/better/audit/`` by better_console, with these permissions:

- ``GET /logs`` (read): entries newest first through ``audit.query()``. Filters: ``tableName``
  (table or ``app_label.Model``), ``recordId``, ``actorId``, ``operation`` and ``severity``
  (comma-separated, any of), ``compliance`` (comma-separated, all of), ``search`` (label or
  description), ``since`` (``24h``, ``7d`` or an ISO date/time), ``until`` (ISO date/time; a bare
  date includes that day), ``order`` (``desc``/``asc``); pages by ``limit`` and ``cursor``.
- ``GET /logs/:id`` (read): one entry.
- ``GET /stats`` (read): ``audit.stats()``; ``days`` (1-365 or ``all``, default 30), ``top``.
- ``GET /export`` (read): the filtered entries as a streamed download, ``format`` ``json``
  (an array), ``ndjson`` or ``csv``, oldest first, with the chain head of ``audit.export()``.
  It needs ``read``: it holds exactly what ``GET /logs`` pages through, and the seed names no
  stricter level for reading the trail.

Every endpoint takes ``tenantId`` to read one tenant's trail (it runs as that tenant, so the
trail's row-level security narrows it, and an export's chain head is that tenant's chain);
otherwise it reads every tenant's. Entries are camelCase: ``tableName``, ``recordId``,
``actorId``, ``beforeData``, ``afterData``, ``diff`` (``{"changedFields"}``), ``redactedFields``,
``correlationId``, ``tenantId``, ...; the row snapshots keep their column names.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.http import StreamingHttpResponse

from better_audit.exports import export_response
from better_audit.models import AuditLog
from better_audit.queries import ORDERS, AuditQuery, max_query_limit, query
from better_audit.sql import COLUMNS
from better_audit.statistics import MAX_DAYS, stats
from better_console.products import (
    MAX_LIMIT,
    bad_request,
    camelize,
    console_scope,
    fields_json,
    not_found,
    param,
    parse_choice,
    parse_int,
    parse_limit,
    parse_list,
    parse_moment,
    path_id,
    tenant_param,
)
from better_console.registry import ConsoleRequest, ConsoleResponse, Endpoint, register_product

# Every column but the diff, whose keys are camelised on their own (see _entry).
FIELDS = tuple(column for column in COLUMNS if column != "diff")
EXPORT_FORMATS = ("json", "ndjson", "csv")
MAX_TOP = 100


def entry_json(entry: AuditLog) -> dict[str, Any]:
    body = fields_json(entry, FIELDS)
    # The diff's keys are the suite's own (changed_fields), unlike the row snapshots' columns.
    body["diff"] = camelize(entry.diff) if entry.diff is not None else None
    return body


def _filtered(request: ConsoleRequest) -> AuditQuery:
    """``audit.query()`` with the request's filters and order (no page)."""
    since = parse_moment(request, "since")
    until = param(request, "until")
    if until is not None:
        try:
            datetime.fromisoformat(until)
        except ValueError:
            raise bad_request(
                "until must be an ISO 8601 date or time such as 2025-01-31 or "
                f"2025-01-31T23:59:59Z; got {until!r}.",
                "INVALID_FILTER",
            ) from None
    order = parse_choice(request, "order", ORDERS)
    q = query()
    try:
        if (table := param(request, "tableName")) is not None:
            q = q.resource(table)
        if (record := param(request, "recordId")) is not None:
            q = q.record(record)
        if (actor := param(request, "actorId")) is not None:
            q = q.actor(actor)
        if operations := parse_list(request, "operation"):
            q = q.operation(*operations)
        if severities := parse_list(request, "severity"):
            q = q.severity(*severities)
        if tags := parse_list(request, "compliance"):
            q = q.compliance(*tags)
        if (text := param(request, "search")) is not None:
            q = q.search(text)
        if until is not None:
            q = q.between(since, until)
        elif since is not None:
            q = q.since(since)
        if order is not None:
            q = q.order(order)
    except ValueError as exc:
        raise bad_request(str(exc), "INVALID_FILTER") from exc
    return q


def list_logs(request: ConsoleRequest) -> ConsoleResponse:
    tenant_id = tenant_param(request)
    q = _filtered(request).limit(parse_limit(request, maximum=min(MAX_LIMIT, max_query_limit())))
    cursor = param(request, "cursor")
    if cursor is not None:
        try:
            q = q.after(cursor)
        except ValueError as exc:
            raise bad_request(str(exc), "INVALID_CURSOR") from exc
    with console_scope(tenant_id):
        page = q.list()
        data = [entry_json(entry) for entry in page.entries]
    return ConsoleResponse(body={"data": data, "nextCursor": page.next_cursor})


def get_log(request: ConsoleRequest) -> ConsoleResponse:
    entry_id = path_id(request)
    with console_scope(tenant_param(request)):
        entry = AuditLog.objects.filter(pk=entry_id).first()
    if entry is None:
        raise not_found("audit log entry", entry_id)
    return ConsoleResponse(body=entry_json(entry))


def get_stats(request: ConsoleRequest) -> ConsoleResponse:
    tenant_id = tenant_param(request)
    days: int | None = 30
    if param(request, "days") == "all":
        days = None
    else:
        days = parse_int(request, "days", 1, MAX_DAYS) or days
    top = parse_int(request, "top", 1, MAX_TOP) or 10
    with console_scope(tenant_id):
        result = stats(days=days, top=top)
    return ConsoleResponse(body=camelize(result))


def export(request: ConsoleRequest) -> StreamingHttpResponse:
    tenant_id = tenant_param(request)
    chosen = parse_choice(request, "format", EXPORT_FORMATS) or "json"
    q = _filtered(request)
    filename = param(request, "filename") or "audit-export"
    fmt, style = ("json", "ndjson") if chosen == "ndjson" else (chosen, "array")
    # Called in the scope so that the streamed body is read in it again (export_response
    # captures the scope it is called in).
    with console_scope(tenant_id):
        return export_response(fmt, q, filename, json_style=style)


ENDPOINTS = (
    Endpoint("GET", "/logs", list_logs, "read"),
    Endpoint("GET", "/logs/:id", get_log, "read"),
    Endpoint("GET", "/stats", get_stats, "read"),
    Endpoint("GET", "/export", export, "read"),
)


def register() -> None:
    """Register (or re-register) the ``audit`` product with the console."""
    register_product("audit", "Audit log", ENDPOINTS, replace=True)
