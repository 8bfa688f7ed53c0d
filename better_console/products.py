"""Shared parts of the suite's console products: scopes, input parsing, keyset pages, JSON shapes.

Every product of the suite answers in the same shapes, so the console UI reads them alike:

- keys are camelCase (``createdAt``, ``tenantId``); stored data (a row snapshot, metadata) is
  passed through as it is;
- a log-like list is ``{"entries": [...], "hasNextPage": bool, "nextCursor"?: str}``, as the
  published audit log pages: ``?limit=`` (from 1, larger than 1000 capped, default 50; a page holds
  at most 250) and ``?cursor=`` (the previous page's ``nextCursor``, unchanged); a short, fixed
  list (a catalog, the templates) is a bare array;
- handlers read across tenants (system mode), or as one tenant when ``?tenantId=`` is given, so
  row-level security itself narrows what they see;
- bad input is a 400 ``{"error", "code"}`` (``INVALID_ID``, ``INVALID_LIMIT``, ``INVALID_CURSOR``,
  ``INVALID_FILTER``, ``INVALID_BODY``, ...), an unknown id a 404 ``NOT_FOUND``.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Any, TypeVar

from django.db.models import Model, Q, QuerySet
from django.utils import timezone

from better_console.exceptions import ConsoleError
from better_console.registry import ConsoleRequest
from better_core.durations import UNITS_HELP, parse_since
from better_tenant.shortcuts import narrowed_scope, system_scope, tenancy_installed

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
# The most rows one page holds, whatever the limit asked (as the published audit storage pages).
PAGE_LIMIT = 250
ORDERS = ("asc", "desc")

_M = TypeVar("_M", bound=Model)


# --- JSON -----------------------------------------------------------------------------------------


def camel(name: str) -> str:
    """``created_at`` -> ``createdAt``."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def json_value(value: Any) -> Any:
    """``value`` with datetimes, dates and UUIDs as strings, containers converted throughout."""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {str(key): json_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_value(item) for item in value]
    return value


def camelize(value: Any) -> Any:
    """``value`` with every dict key camelCased, throughout (for the suite's own result dicts,
    never for stored data whose keys are column or user names)."""
    if isinstance(value, dict):
        return {camel(str(key)): camelize(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [camelize(item) for item in value]
    return json_value(value)


def without_nulls(body: dict[str, Any], keep: Iterable[str] = ()) -> dict[str, Any]:
    """``body`` less its None values (except the keys in ``keep``): absent, as the published
    servers leave an empty column out of an entry."""
    kept = set(keep)
    return {key: value for key, value in body.items() if value is not None or key in kept}


def fields_json(obj: Any, fields: Iterable[str]) -> dict[str, Any]:
    """The named attributes of ``obj`` under camelCase keys, as JSON values."""
    return {camel(name): json_value(getattr(obj, name)) for name in fields}


# --- errors ---------------------------------------------------------------------------------------


def bad_request(message: str, code: str, **extra: Any) -> ConsoleError:
    return ConsoleError(message, status=400, code=code, **extra)


def not_found(what: str, value: Any) -> ConsoleError:
    return ConsoleError(f"No {what} has the id {str(value)!r}.", status=404, code="NOT_FOUND")


# --- input ----------------------------------------------------------------------------------------


def param(request: ConsoleRequest, name: str) -> str | None:
    """The query parameter ``name``, stripped; None when absent or empty."""
    # Handlers called directly (not through the view) may pass lists or numbers as well.
    value: object = (request.query or {}).get(name)
    if isinstance(value, (list, tuple)):
        value = value[-1] if value else None
    if value is None:
        return None
    text = str(value).strip()
    if "\x00" in text:
        # PostgreSQL text cannot hold U+0000: a 400 here, not a failed query.
        raise bad_request(f"{name} holds a NUL character (%00).", "INVALID_FILTER")
    return text or None


def parse_uuid(value: Any, name: str) -> uuid.UUID:
    """``value`` as a UUID, or a 400 ``INVALID_ID`` naming the parameter."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except (TypeError, ValueError, AttributeError):
        raise bad_request(
            f"{name} must be a UUID such as 550e8400-e29b-41d4-a716-446655440000; got {value!r}.",
            "INVALID_ID",
        ) from None


def path_id(request: ConsoleRequest, name: str = "id") -> uuid.UUID:
    """The ``:id`` segment of the path as a UUID (400 ``INVALID_ID`` when it is not one)."""
    return parse_uuid(request.params.get(name), name)


def uuid_param(request: ConsoleRequest, name: str) -> uuid.UUID | None:
    value = param(request, name)
    return None if value is None else parse_uuid(value, name)


def tenant_param(request: ConsoleRequest) -> uuid.UUID | None:
    """``?tenantId=``: the tenant the request is narrowed to, or None for every tenant."""
    return uuid_param(request, "tenantId")


def parse_limit(request: ConsoleRequest, *, default: int | None = DEFAULT_LIMIT) -> Any:
    """``?limit=`` as the published servers read it: a number of at least 1, larger than
    MAX_LIMIT capped; ``default`` when absent, a 400 ``INVALID_LIMIT`` when not a number."""
    text = (request.query or {}).get("limit")
    if text is None:
        return default
    limit = bounded_int(text, 1, MAX_LIMIT)
    if limit is None:
        raise bad_request(
            f"Invalid 'limit': must be a positive integer (max {MAX_LIMIT})", "INVALID_LIMIT"
        )
    return limit


def bounded_int(text: str, low: int, high: int) -> int | None:
    """``text`` read as a number the way the published servers read ``limit`` and ``offset``:
    a finite number, floored, at least ``low`` (else None) and capped at ``high``."""
    text = text.strip()
    try:
        if not text:
            value = 0.0
        elif text.lower().startswith(("0x", "0o", "0b")):
            value = float(int(text, 0))
        else:
            value = float(text)
    except ValueError:
        return None
    if not math.isfinite(value) or value < low:
        return None
    return min(math.floor(value), high)


def parse_instant(text: str) -> datetime | None:
    """An ISO 8601 date or time as an aware datetime (a bare date or a time without an offset is
    UTC), or None."""
    text = text.strip()
    if text[-1:] in ("z", "Z"):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if timezone.is_aware(moment) else moment.replace(tzinfo=UTC)


def parse_int(request: ConsoleRequest, name: str, low: int, high: int) -> int | None:
    """``?<name>=`` as a whole number from ``low`` to ``high``, or None when absent."""
    text = param(request, name)
    if text is None:
        return None
    if not text.isdigit() or not low <= int(text) <= high:
        raise bad_request(
            f"{name} must be a whole number from {low} to {high}; got {text!r}.", "INVALID_FILTER"
        )
    return int(text)


def parse_choice(
    request: ConsoleRequest, name: str, allowed: Sequence[str], *, upper: bool = False
) -> str | None:
    """``?<name>=`` as one of ``allowed`` (upper-cased first with ``upper``), or None."""
    text = param(request, name)
    if text is None:
        return None
    value = text.upper() if upper else text
    if value not in allowed:
        raise bad_request(
            f"{name} must be one of {', '.join(allowed)}; got {text!r}.", "INVALID_FILTER"
        )
    return value


def parse_moment(request: ConsoleRequest, name: str) -> datetime | None:
    """``?<name>=``: a duration back from now (``24h``, ``7d``) or an ISO 8601 date or time."""
    text = param(request, name)
    if text is None:
        return None
    try:
        return parse_since(text)
    except ValueError:
        raise bad_request(
            f"{name} must be a duration ({UNITS_HELP}; e.g. 24h or 7d) or an ISO 8601 date or "
            f"time such as 2025-01-31 or 2025-01-31T12:00:00Z; got {text!r}.",
            "INVALID_FILTER",
        ) from None


def json_body(
    request: ConsoleRequest, allowed: Iterable[str], *, required: bool = True
) -> dict[str, Any]:
    """The JSON object of the request body, holding no key outside ``allowed``."""
    body = request.body
    if body is None and not required:
        return {}
    if not isinstance(body, dict):
        raise bad_request(
            "The request body must be a JSON object (Content-Type: application/json).",
            "INVALID_BODY",
        )
    allowed = tuple(allowed)
    unknown = sorted(key for key in body if key not in allowed)
    if unknown:
        raise bad_request(
            f"Unknown field {unknown[0]!r} in the request body; the fields are "
            f"{', '.join(allowed)}.",
            "INVALID_BODY",
        )
    return body


# --- scope ----------------------------------------------------------------------------------------


@contextmanager
def console_scope(
    tenant_id: uuid.UUID | None = None, *, using: str | None = None
) -> Iterator[None]:
    """One transaction that sees every tenant's rows, or, with ``tenant_id``, that tenant's only.

    Narrowing runs as the tenant (``run_as``), so row-level security does the filtering and a
    write lands in that tenant.
    """
    if tenant_id is None:
        with system_scope(using=using):
            yield
        return
    if not tenancy_installed():
        raise bad_request(
            "tenantId narrows a request to one tenant, which needs better_tenant in "
            "INSTALLED_APPS; leave tenantId out.",
            "TENANCY_NOT_INSTALLED",
        )
    with narrowed_scope(tenant_id, using=using):
        yield


# --- keyset pages ---------------------------------------------------------------------------------


def keyset_page(
    queryset: QuerySet[_M],
    request: ConsoleRequest,
    serialize: Callable[[list[_M]], list[Any]],
    *,
    field: str = "created_at",
    descending: bool = True,
) -> dict[str, Any]:
    """One page of ``queryset`` ordered by ``(field, pk)``: ``{"entries", "hasNextPage",
    "nextCursor"?}``, the envelope of the published audit log.

    Keyset, not offset: a deep page costs what the first does and rows inserted meanwhile never
    shift a page. ``field`` is a non-null datetime column.
    """
    limit = min(parse_limit(request), PAGE_LIMIT)
    order = "desc" if descending else "asc"
    qs = queryset.order_by(f"-{field}", "-pk") if descending else queryset.order_by(field, "pk")
    cursor = param(request, "cursor")
    if cursor is not None:
        moment, last_pk = decode_cursor(cursor, order)
        op = "lt" if descending else "gt"
        qs = qs.filter(Q(**{f"{field}__{op}": moment}) | Q(**{field: moment, f"pk__{op}": last_pk}))
    rows = list(qs[: limit + 1])
    page: dict[str, Any] = {"entries": serialize(rows[:limit]), "hasNextPage": len(rows) > limit}
    if len(rows) > limit:
        last = rows[limit - 1]
        page["nextCursor"] = encode_cursor(getattr(last, field), last.pk, order)
    return page


def encode_cursor(moment: datetime, pk: Any, order: str) -> str:
    """Opaque urlsafe-base64 cursor of ``(moment, pk)`` and the order it pages in."""
    payload = json.dumps([moment.isoformat(), str(pk), order], separators=(",", ":"))
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, order: str) -> tuple[datetime, uuid.UUID]:
    problem = bad_request(
        f"{cursor!r} is not a cursor of this list; pass nextCursor unchanged, or start again "
        "without cursor.",
        "INVALID_CURSOR",
    )
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        moment_text, pk_text, cursor_order = json.loads(raw)
        moment = datetime.fromisoformat(moment_text)
        pk = uuid.UUID(pk_text)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise problem from None
    if timezone.is_naive(moment) or cursor_order != order:
        raise problem
    return moment, pk
