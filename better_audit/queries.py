"""``audit.query()``: a chainable, validated filter over the audit trail with keyset pagination.

Every builder method returns a new query, so a base query can be reused. Filters combine with AND.
Rows are read on the caller's connection and scope: with better_tenant installed a tenant sees only
its own trail; wrap the call in ``run_as_system()`` to read every tenant's.

Pagination is by keyset on ``(timestamp, id)``: ``list()`` returns at most ``limit`` entries and an
opaque ``next_cursor``; pass it to ``after()`` for the next page. A cursor is valid only for the
order it was made with; deep pages cost the same as the first.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from django.db.models import Q, QuerySet
from django.utils import timezone

from better_audit.models import OPERATIONS, SEVERITIES
from better_core.durations import parse_since

DEFAULT_LIMIT = 100
ORDERS = ("asc", "desc")


@dataclass(frozen=True)
class QueryResult:
    """One page: the entries (``AuditLog`` instances) and the cursor of the next page, if any."""

    entries: list[Any] = field(default_factory=list)
    next_cursor: str | None = None


class AuditQuery:
    """Filter builder over ``audit_logs``; create it with ``audit.query()``."""

    def __init__(self, using: str | None = None) -> None:
        self._using = using
        self._q: list[Q] = []
        self._tags: list[str] = []
        self._actors: list[str] = []
        self._resource: tuple[str, str | None] | None = None
        self._since: datetime | None = None
        self._until: datetime | None = None
        self._range: tuple[datetime | None, datetime | None, bool] | None = None
        self._order = "desc"
        self._order_given = False
        self._limit: int | None = None
        self._cursor: tuple[datetime, uuid.UUID] | None = None

    def _clone(self) -> AuditQuery:
        clone = copy.copy(self)
        clone._q = list(self._q)
        clone._tags = list(self._tags)
        clone._actors = list(self._actors)
        return clone

    def _where(self, condition: Q) -> AuditQuery:
        clone = self._clone()
        clone._q.append(condition)
        return clone

    # --- filters ---------------------------------------------------------------------------------

    def where(self, *conditions: Q) -> AuditQuery:
        """Entries matching Django ``Q`` conditions on the ``AuditLog`` fields, for what the named
        filters do not cover (several actors, an inclusive time window, ...)."""
        if not all(isinstance(condition, Q) for condition in conditions):
            raise TypeError("where() takes django.db.models.Q conditions.")
        clone = self._clone()
        clone._q.extend(conditions)
        return clone

    def resource(self, table: str, record_id: Any = None) -> AuditQuery:
        """Entries of one audited table (SQL table name or ``"app_label.Model"``), and of one
        record of it when ``record_id`` is given. A later call replaces an earlier one, as in
        ``@usebetterdev/audit-core``."""
        from better_audit.tables import resolve_table_name

        if not isinstance(table, str) or not table:
            raise ValueError(f"resource() takes a table name; got {table!r}.")
        if record_id == "":
            raise ValueError("resource() takes a record id or None; got an empty value.")
        clone = self._clone()
        record = None if record_id is None else str(record_id)
        clone._resource = (resolve_table_name(table), record)
        return clone

    def actor(self, *actor_ids: Any) -> AuditQuery:
        """Entries written by any of the given actors; calls add to the set (OR, as in
        ``@usebetterdev/audit-core``)."""
        given = list(_flat(actor_ids))
        if not given or any(value is None or value == "" for value in given):
            raise ValueError(f"actor() takes one or more actor ids; got {actor_ids!r}.")
        values = [str(value) for value in given]
        clone = self._clone()
        clone._actors.extend(value for value in values if value not in clone._actors)
        return clone

    def record(self, record_id: Any) -> AuditQuery:
        """Entries of one record (combine with ``resource()`` to use the record index fully)."""
        if record_id is None or record_id == "":
            raise ValueError("record() takes a record id; got an empty value.")
        return self._where(Q(record_id=str(record_id)))

    def operation(self, *operations: str) -> AuditQuery:
        """Entries of any of the given operations (INSERT, UPDATE, DELETE; any case)."""
        values = [_choice("operation", op, OPERATIONS, upper=True) for op in _flat(operations)]
        if not values:
            raise ValueError(f"operation() takes at least one of {', '.join(OPERATIONS)}.")
        return self._where(Q(operation__in=values))

    def severity(self, *levels: str) -> AuditQuery:
        """Entries of any of the given severities (low, medium, high, critical)."""
        values = [_choice("severity", level, SEVERITIES) for level in _flat(levels)]
        if not values:
            raise ValueError(f"severity() takes at least one of {', '.join(SEVERITIES)}.")
        return self._where(Q(severity__in=values))

    def compliance(self, *tags: str) -> AuditQuery:
        """Entries carrying every given tag (``compliance @> ARRAY[...]``, GIN-indexable)."""
        values = list(_flat(tags))
        if not values or not all(isinstance(tag, str) and tag for tag in values):
            raise ValueError(f"compliance() takes one or more non-empty tags; got {tags!r}.")
        clone = self._clone()
        clone._tags.extend(tag for tag in values if tag not in clone._tags)
        return clone

    def search(self, text: str) -> AuditQuery:
        """Entries whose label or description contains ``text`` (case-insensitive)."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError("search() takes a non-empty string.")
        text = text.strip()
        return self._where(Q(label__icontains=text) | Q(description__icontains=text))

    def since(self, value: str | date | datetime) -> AuditQuery:
        """Entries from a duration ago (``1h``, ``24h``, ``7d``, ``90d``, ``1y``) or an ISO date on.

        Exclusive with ``between()``.
        """
        if self._range is not None:
            raise ValueError("since() and between() cannot be combined; use one time filter.")
        clone = self._clone()
        clone._since = parse_since(value)
        _ordered_window(clone._since, clone._until)
        return clone

    def until(self, value: str | date | datetime) -> AuditQuery:
        """Entries before a moment (``timestamp < value``): a duration ago (``4h``, ``30d``) or
        an ISO date or time. Combines with ``since()``; exclusive with ``between()``; a later
        call replaces an earlier one, as in ``@usebetterdev/audit-core``."""
        if self._range is not None:
            raise ValueError("until() and between() cannot be combined; use one time filter.")
        clone = self._clone()
        clone._until = parse_since(value)
        _ordered_window(clone._since, clone._until)
        return clone

    def between(
        self, start: str | date | datetime | None, end: str | date | datetime | None
    ) -> AuditQuery:
        """Entries with ``start <= timestamp <= end`` (either bound may be None).

        Bounds are datetimes, dates or ISO 8601 strings; a bare date as ``end`` includes that whole
        day. Exclusive with ``since()``.
        """
        for name, bound in (("since", self._since), ("until", self._until)):
            if bound is not None:
                raise ValueError(f"{name}() and between() cannot be combined; use one time filter.")
        if start is None and end is None:
            raise ValueError("between() needs a start, an end, or both.")
        lower = None if start is None else _instant(start, "start")
        upper, end_exclusive = (None, False) if end is None else _upper(end)
        if lower is not None and upper is not None and lower > upper:
            raise ValueError(f"between(): start {lower.isoformat()} is after end {end!s}.")
        clone = self._clone()
        clone._range = (lower, upper, end_exclusive)
        return clone

    # --- shape -----------------------------------------------------------------------------------

    def order(self, direction: str) -> AuditQuery:
        """``"desc"`` (newest first, the default) or ``"asc"``, by timestamp then id."""
        value = _choice("order", direction, ORDERS, lower=True)
        clone = self._clone()
        clone._order, clone._order_given = value, True
        return clone

    def limit(self, n: int) -> AuditQuery:
        """Page size of ``list()``: 1 to ``BETTER_AUDIT['MAX_QUERY_LIMIT']``."""
        maximum = max_query_limit()
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"limit() takes a whole number from 1 to {maximum}; got {n!r}.")
        if n > maximum:
            raise ValueError(
                f"limit({n}) exceeds BETTER_AUDIT['MAX_QUERY_LIMIT'] ({maximum}). Page through "
                "the results with next_cursor and after(), or raise MAX_QUERY_LIMIT."
            )
        clone = self._clone()
        clone._limit = n
        return clone

    def after(self, cursor: str | None) -> AuditQuery:
        """Continue after the page that returned ``cursor`` (None starts at the beginning)."""
        clone = self._clone()
        clone._cursor = None if cursor is None else decode_cursor(cursor, self._order)
        return clone

    # --- evaluation ------------------------------------------------------------------------------

    @property
    def queryset(self) -> QuerySet:
        """The filtered, ordered QuerySet (cursor applied, no limit)."""
        qs = self._filtered()
        if self._cursor is not None:
            moment, last_id = self._cursor
            if self._order == "desc":
                qs = qs.filter(
                    Q(timestamp__lt=moment) | Q(timestamp=moment, id__lt=last_id),
                    timestamp__lte=moment,
                )
            else:
                qs = qs.filter(
                    Q(timestamp__gt=moment) | Q(timestamp=moment, id__gt=last_id),
                    timestamp__gte=moment,
                )
        keys = ("-timestamp", "-id") if self._order == "desc" else ("timestamp", "id")
        return qs.order_by(*keys)

    def ordered(self, direction: str) -> AuditQuery:
        """This query in ``direction`` unless an order was chosen explicitly (used by export)."""
        return self if self._order_given else self.order(direction)

    def list(self) -> QueryResult:
        """One page of at most ``limit`` entries (default 100) and the next page's cursor."""
        size = self._limit or min(DEFAULT_LIMIT, max_query_limit())
        rows = list(self.queryset[: size + 1])
        if len(rows) <= size:
            return QueryResult(entries=rows, next_cursor=None)
        rows = rows[:size]
        last = rows[-1]
        return QueryResult(entries=rows, next_cursor=encode_cursor(last.timestamp, last.id, self))

    def count(self) -> int:
        """Number of entries matching the filters (cursor and limit ignored)."""
        return self._filtered().count()

    def __iter__(self) -> Any:
        # Iterating a query walks every page, so callers never hold more than one page.
        query = self
        while True:
            page = query.list()
            yield from page.entries
            if page.next_cursor is None:
                return
            query = query.after(page.next_cursor)

    def _filtered(self) -> QuerySet:
        from better_audit.models import AuditLog

        qs = AuditLog.objects.all()
        if self._using:
            qs = qs.using(self._using)
        for condition in self._q:
            qs = qs.filter(condition)
        if self._tags:
            qs = qs.filter(compliance__contains=self._tags)
        if self._actors:
            qs = qs.filter(actor_id__in=self._actors)
        if self._resource is not None:
            table, record = self._resource
            qs = qs.filter(table_name=table)
            if record is not None:
                qs = qs.filter(record_id=record)
        if self._since is not None:
            qs = qs.filter(timestamp__gte=self._since)
        if self._until is not None:
            qs = qs.filter(timestamp__lt=self._until)
        if self._range is not None:
            lower, upper, end_exclusive = self._range
            if lower is not None:
                qs = qs.filter(timestamp__gte=lower)
            if upper is not None:
                qs = (
                    qs.filter(timestamp__lt=upper)
                    if end_exclusive
                    else qs.filter(timestamp__lte=upper)
                )
        return qs

    def __repr__(self) -> str:
        return f"<AuditQuery {self.queryset.query}>"


def query(using: str | None = None) -> AuditQuery:
    """A new query over the whole audit trail (in the current tenant scope)."""
    return AuditQuery(using=using)


def max_query_limit() -> int:
    from better_audit.conf import audit_settings

    value = audit_settings.raw("MAX_QUERY_LIMIT")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        # The system check reports the setting; a query still gets the documented default.
        return 1000
    return value


# --- cursors --------------------------------------------------------------------------------------


def encode_cursor(moment: datetime, entry_id: Any, source: AuditQuery) -> str:
    """Opaque urlsafe-base64 cursor of ``(timestamp, id)`` and the order it pages in."""
    payload = json.dumps([moment.isoformat(), str(entry_id), source._order], separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, order: str) -> tuple[datetime, uuid.UUID]:
    problem = f"{cursor!r} is not a cursor returned by list(); pass next_cursor unchanged."
    if not isinstance(cursor, str) or not cursor:
        raise ValueError(problem)
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        moment_text, id_text, cursor_order = json.loads(raw)
        moment = datetime.fromisoformat(moment_text)
        entry_id = uuid.UUID(id_text)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise ValueError(problem) from None
    if timezone.is_naive(moment) or cursor_order not in ORDERS:
        raise ValueError(problem)
    if cursor_order != order:
        raise ValueError(
            f"This cursor pages in {cursor_order!r} order but the query is {order!r}; call "
            "order() before after() with the order the cursor was made with."
        )
    return moment, entry_id


# --- helpers --------------------------------------------------------------------------------------


def _ordered_window(since: datetime | None, until: datetime | None) -> None:
    if since is not None and until is not None and since >= until:
        raise ValueError(f"since ({since.isoformat()}) must be before until ({until.isoformat()}).")


def _flat(values: Iterable[Any]) -> Iterable[Any]:
    for value in values:
        if isinstance(value, (list, tuple, set, frozenset)):
            yield from value
        else:
            yield value


def _choice(
    name: str, value: Any, allowed: tuple[str, ...], *, upper: bool = False, lower: bool = False
) -> str:
    normal = value
    if isinstance(value, str):
        normal = value.upper() if upper else value.lower() if lower else value
    if normal not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}.")
    return normal


def _instant(value: Any, name: str) -> datetime:
    if isinstance(value, str) and not value.strip():
        raise ValueError(f"between(): {name} is empty; give an ISO 8601 date or time.")
    if not isinstance(value, (str, date, datetime)):
        raise ValueError(f"between(): {name} must be a datetime, date or ISO 8601 string.")
    try:
        return parse_since(value) if not isinstance(value, str) else _iso(value)
    except ValueError:
        raise ValueError(
            f"between(): {name} {value!r} is not an ISO 8601 date or time such as 2025-01-31 or "
            "2025-01-31T23:59:59Z."
        ) from None


def _iso(text: str) -> datetime:
    parsed = datetime.fromisoformat(text.strip())
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed)


def _upper(value: Any) -> tuple[datetime, bool]:
    """The end bound; a bare date means up to the end of that day (exclusive next midnight)."""
    day: date | None = None
    if isinstance(value, date) and not isinstance(value, datetime):
        day = value
    elif isinstance(value, str) and len(value.strip()) == 10:
        try:
            day = date.fromisoformat(value.strip())
        except ValueError:
            day = None
    if day is not None:
        start = timezone.make_aware(datetime(day.year, day.month, day.day))
        return start + timedelta(days=1), True
    return _instant(value, "end"), False
