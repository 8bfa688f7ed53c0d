"""Our console endpoints against the published reference server, request for request."""

from __future__ import annotations

import csv
import http.client
import io
import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

import jwt
import pytest

from tests.support.console import SENT
from tests.support.tenants import unsigned_context

BASE = "/.well-known/better"
TOKEN_HASH = "sha256:" + "c0ffee00" * 8
ORIGINS = ("https://console.usebetter.dev", "http://localhost:5173")
EMAILS = ("admin@example.com", "*@ops.example.com")
MAX_ATTEMPTS = 3
LEVELS = ("read", "write", "admin")
NO_BODY = object()

# --- the comparison rules -------------------------------------------------------------------------

# Keys our bodies may hold beyond the reference's. Extend only with a comment saying why.
EXTENSIONS = frozenset(
    {
        "code",  # a machine-readable error code beside the error text
        "remainingAttempts",  # wrong magic link codes left before the link locks
        "retryAfter",  # seconds to wait after a 429 (also the Retry-After header)
        "hint",  # advice on configuration errors
        "tenantId",  # audit entries: the tenant whose trail holds the entry
        "correlationId",  # audit entries: the request that made the change
    }
)
# Error texts of the protocol that must be equal word for word (product routes: all of them).
PROTOCOL_ERRORS = frozenset(
    {
        "Not found",
        "Missing session token",
        "Invalid or expired session",
        "Insufficient permissions",
        "Missing session_id",
        "Invalid session_id format",
        "Missing code or session_id",
        "Invalid code format",
        "Magic link not found",
        "Magic link already used",
        "Magic link expired",
        "Too many failed attempts",
        "Invalid code",
        "Magic link not yet verified",
    }
)
PRODUCT_PREFIXES = ("/tenant/", "/audit/")
# Values that differ between any two servers by design: only their presence and type count.
OPAQUE = frozenset({"sessionToken", "sessionId", "nextCursor", "prevCursor"})
CORS_HEADERS = (
    "access-control-allow-origin",
    "access-control-allow-methods",
    "access-control-allow-headers",
    "access-control-max-age",
)

# Requests the reference answers 500 through a fault of its own, while ours answers a 4xx JSON
# error on purpose: case id -> (our status, why).
DELIBERATE_DIFFERENCES: dict[str, tuple[int, str]] = {
    "tenant-get-non-uuid": (400, "the reference passes the id to a uuid column unchecked"),
    "tenant-patch-non-uuid": (400, "the reference passes the id to a uuid column unchecked"),
    "tenant-delete-non-uuid": (400, "the reference passes the id to a uuid column unchecked"),
    "tenant-patch-unknown": (404, "the reference's repository throws 'tenant not found'"),
    "tenant-create-duplicate-slug": (409, "the reference lets the unique violation escape"),
    "tenant-create-long-slug": (400, "slugs are varchar(63) here; the reference checks 255"),
    "audit-logs-operation-invalid": (400, "the reference validates operation by throwing"),
    "audit-logs-severity-invalid": (400, "the reference validates severity by throwing"),
    "audit-logs-cursor-invalid": (400, "the reference decodes the cursor by throwing"),
    "audit-logs-around-non-uuid": (400, "the reference passes the id to a uuid column unchecked"),
    "audit-log-non-uuid": (400, "the reference passes the id to a uuid column unchecked"),
    "audit-logs-operation-empty": (400, "the reference validates operation by throwing"),
    "tenant-patch-duplicate-slug": (409, "the reference lets the unique violation escape"),
}

# Requests no console sends, answered otherwise on purpose: case id -> (the reference's status,
# ours, why). Each is asserted as such, so a change on either side shows.
EXTENDED_ANSWERS: dict[str, tuple[int, int, str]] = {
    "tenant-create-bad-json": (
        400,
        400,
        "malformed JSON is named as such here; the reference reads it as a missing body",
    ),
    "audit-logs-since-duration": (
        400,
        200,
        "since also takes a duration back from now (24h, 7d) here, an extension",
    ),
}


@dataclass(frozen=True)
class Reply:
    """One HTTP answer: status, headers (lowercased names) and body."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def kind(self) -> str:
        """The Content-Type family: json, html, csv, none (no body) or the bare media type."""
        if not self.body:
            return "none"  # a 204, say: its Content-Type carries nothing
        media = self.headers.get("content-type", "").split(";")[0].strip().lower()
        for family in ("json", "html", "csv"):
            if family in media:
                return family
        return media or "unknown"

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def get(self, key: str) -> Any:
        data = self.json()
        return data.get(key) if isinstance(data, dict) else None

    def __str__(self) -> str:
        return f"{self.status} {self.kind} {self.body[:300]!r}"


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def differences(
    ref: Reply, ours: Reply, *, values: bool = False, exact_errors: bool = False
) -> list[str]:
    """How ``ours`` departs from the reference's answer ``ref`` to the same request.

    - The status codes are equal.
    - ``Access-Control-Allow-Origin``, ``-Allow-Methods``, ``-Allow-Headers`` and ``-Max-Age``
      are equal, absent included (other headers, ``Vary`` and ``-Expose-Headers`` among them,
      are free).
    - The Content-Type family (json, html, csv, none) is equal.
    - JSON shapes: every key of the reference's body is in ours with the same JSON type,
      recursively; array elements are compared index by index (an empty array fits any); ours
      adds no key outside ``EXTENSIONS``.
    - An ``error`` text is equal when it is one of ``PROTOCOL_ERRORS`` or ``exact_errors`` is
      set (the product routes' validation messages).
    - With ``values``, every value is equal too (lists have the same length), except those of
      the ``OPAQUE`` keys, which only have to be present. A CSV body holds the reference's
      columns first and in order (then only ``EXTENSIONS``), and the same rows and cells.
    """
    problems = []
    if ref.status != ours.status:
        problems.append(f"status {ours.status} instead of {ref.status}")
    for name in CORS_HEADERS:
        if ref.headers.get(name) != ours.headers.get(name):
            problems.append(
                f"header {name}: {ours.headers.get(name)!r} instead of {ref.headers.get(name)!r}"
            )
    if ref.kind != ours.kind:
        problems.append(f"content type {ours.kind!r} instead of {ref.kind!r}")
    elif ref.kind == "json":
        expected, actual = ref.json(), ours.json()
        error = expected.get("error") if isinstance(expected, dict) else None
        if (
            isinstance(error, str)
            and (exact_errors or error in PROTOCOL_ERRORS)
            and isinstance(actual, dict)
            and actual.get("error") != error
        ):
            problems.append(f"error {actual.get('error')!r} instead of {error!r}")
        _compare(expected, actual, "body", values, problems)
    elif ref.kind == "csv" and values:
        _compare_csv(ref.body.decode(), ours.body.decode(), problems)
    if problems:
        problems.append(f"(reference: {ref}; ours: {ours})")
    return problems


def _compare_csv(expected: str, actual: str, problems: list[str]) -> None:
    expected_rows = list(csv.reader(io.StringIO(expected)))
    actual_rows = list(csv.reader(io.StringIO(actual)))
    header = expected_rows[0] if expected_rows else []
    ours = actual_rows[0] if actual_rows else []
    if ours[: len(header)] != header or not set(ours[len(header) :]) <= EXTENSIONS:
        problems.append(f"CSV header {ours} instead of {header}")
        return
    if len(actual_rows) != len(expected_rows):
        problems.append(f"CSV: {len(actual_rows) - 1} rows instead of {len(expected_rows) - 1}")
    differing: dict[str, tuple[str, str]] = {}
    for row, other in zip(expected_rows[1:], actual_rows[1:], strict=False):
        for column, one, two in zip(header, row, other[: len(header)], strict=False):
            if one != two:
                differing.setdefault(column, (two, one))
    for column, (two, one) in differing.items():
        problems.append(f"CSV column {column}: e.g. {two!r:.80} instead of {one!r:.80}")


def _compare(expected: Any, actual: Any, where: str, values: bool, problems: list[str]) -> None:
    kind = json_type(expected)
    if json_type(actual) != kind:
        problems.append(f"{where}: {json_type(actual)} {actual!r:.80} instead of {kind}")
        return
    if kind == "object":
        for key, value in expected.items():
            if key not in actual:
                problems.append(f"{where}: missing key {key!r}")
            elif key in OPAQUE:
                if json_type(actual[key]) != json_type(value):
                    problems.append(f"{where}.{key}: {json_type(actual[key])} not {kind}")
            else:
                _compare(value, actual[key], f"{where}.{key}", values, problems)
        extra = sorted(set(actual) - set(expected) - EXTENSIONS)
        if extra:
            problems.append(f"{where}: keys the reference does not send {extra}")
    elif kind == "array":
        if values and len(expected) != len(actual):
            problems.append(f"{where}: {len(actual)} items instead of {len(expected)}")
        for index, (one, other) in enumerate(zip(expected, actual, strict=False)):
            _compare(one, other, f"{where}[{index}]", values, problems)
    elif values and expected != actual:
        problems.append(f"{where}: {actual!r:.80} instead of {expected!r:.80}")


# --- the two servers ------------------------------------------------------------------------------


Query = dict[str, str] | list[tuple[str, str]]


def request(
    url: str,
    method: str,
    path: str,
    *,
    query: Query | None = None,
    body: Any = NO_BODY,
    headers: dict[str, str] | None = None,
) -> Reply:
    """One HTTP request (no redirects followed, no exception for error statuses).

    ``body`` is sent as JSON, or as is when it is ``bytes`` (with the Content-Type given).
    """
    parts = urlsplit(url)
    target = path + (f"?{urlencode(query)}" if query else "")
    sent = dict(headers or {})
    data = None
    if isinstance(body, bytes):
        data = body
    elif body is not NO_BODY:
        data = json.dumps(body).encode()
        sent.setdefault("Content-Type", "application/json")
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.request(method, target, body=data, headers=sent)
        response = connection.getresponse()
        return Reply(
            response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        )
    finally:
        connection.close()


# A token of the reference's format signed with another secret.
FORGED = jwt.encode(
    {"sessionId": str(uuid.uuid4()), "email": "x@example.com", "permissions": "admin",
     "expiresAt": 4102444800},
    "f0rged" * 11,
    algorithm="HS256",
)  # fmt: skip


@dataclass
class Side:
    """One server under test and what the tests need from it besides HTTP."""

    name: str
    url: str
    mint: Callable[[str, int], str]  # (permission level, seconds to live) -> session token
    code_of: Callable[[str], str | None]  # session id -> the code it "mailed"
    expire: Callable[[str, int], None]  # (session id, seconds) -> the link expired so long ago
    log: Callable[[], str] = str  # what the server wrote to stderr (the reference's 500s)
    tokens: dict[str, str] = field(default_factory=dict)

    def token(self, level: str) -> str:
        if level not in self.tokens:
            self.tokens[level] = self.mint(level, 3600)
        return self.tokens[level]

    def call(
        self,
        method: str,
        path: str,
        *,
        query: Query | None = None,
        body: Any = NO_BODY,
        auth: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """``method BASE+path``; ``auth``: a level, ``expired``, ``forged``, ``lowercase``,
        ``two-spaces`` (an admin token so written) or a raw header."""
        sent = dict(headers or {})
        if auth in LEVELS:
            sent["Authorization"] = f"Bearer {self.token(auth)}"
        elif auth == "lowercase":
            sent["Authorization"] = f"bearer {self.token('admin')}"
        elif auth == "two-spaces":
            sent["Authorization"] = f"Bearer  {self.token('admin')}"
        elif auth == "expired":
            sent["Authorization"] = f"Bearer {self.mint('admin', -3600)}"
        elif auth == "forged":
            sent["Authorization"] = f"Bearer {FORGED}"
        elif auth is not None:
            sent["Authorization"] = auth
        return request(self.url, method, BASE + path, query=query, body=body, headers=sent)


def reference_side(url: str, log: Callable[[], str] = str) -> Side:
    def mint(level: str, seconds: int) -> str:
        reply = request(
            url, "POST", "/__test/token", body={"permissions": level, "expiresIn": seconds}
        )
        return reply.json()["sessionToken"]

    def code_of(session_id: str) -> str | None:
        return request(url, "GET", "/__test/code", query={"session_id": session_id}).get("code")

    def expire(session_id: str, seconds: int) -> None:
        request(url, "POST", "/__test/expire", body={"session_id": session_id, "seconds": seconds})

    return Side("reference", url, mint, code_of, expire, log)


def our_side(url: str) -> Side:
    def mint(level: str, seconds: int) -> str:
        from better_console.testing import session_token

        return session_token(level, lifetime=seconds)

    def code_of(session_id: str) -> str | None:
        sent = [item["code"] for item in SENT if item["session_id"] == session_id]
        return sent[-1] if sent else None

    def expire(session_id: str, seconds: int) -> None:
        from django.utils import timezone

        from better_console.models import MagicLink

        past = timezone.now() - timedelta(seconds=seconds)
        MagicLink.objects.filter(session_id=session_id).update(expires_at=past)

    return Side("ours", url, mint, code_of, expire)


def our_settings(mode: str) -> dict[str, Any]:
    """BETTER_CONSOLE as the reference of ``mode`` is configured (no throttling: it has none)."""
    magic = {
        "ALLOWED_EMAILS": list(EMAILS),
        "SEND_CODE": "tests.support.console.capture_code",
        "MAX_ATTEMPTS": MAX_ATTEMPTS,
    }
    return {
        "TOKEN_HASH": TOKEN_HASH,
        "ALLOWED_ORIGINS": list(ORIGINS),
        "AUTO_APPROVE": mode in ("auto", "both"),
        "MAGIC_LINK": magic if mode in ("magic", "both") else None,
        "THROTTLE": None,
        "POLL_THROTTLE": None,
    }


def reference_env(mode: str) -> dict[str, str]:
    return {
        "TOKEN_HASH": TOKEN_HASH,
        "ALLOWED_ORIGINS": ",".join(ORIGINS),
        "ALLOWED_EMAILS": ",".join(EMAILS),
        "MAX_ATTEMPTS": str(MAX_ATTEMPTS),
        "AUTO_APPROVE": "1" if mode in ("auto", "both") else "0",
        "MAGIC_LINK": "1" if mode in ("magic", "both") else "0",
    }


@dataclass
class Run:
    """Sends each step of a sequence to both servers and collects the differences."""

    ref: Side
    ours: Side
    problems: list[str] = field(default_factory=list)

    @property
    def sides(self) -> tuple[Side, Side]:
        return self.ref, self.ours

    def step(
        self,
        label: str,
        send: Callable[[Side], Reply],
        *,
        values: bool = False,
        exact_errors: bool = False,
    ) -> tuple[Reply, Reply]:
        ref, ours = send(self.ref), send(self.ours)
        for problem in differences(ref, ours, values=values, exact_errors=exact_errors):
            self.problems.append(f"{label}: {problem}")
        return ref, ours

    def per_side(self, replies: tuple[Reply, Reply], pick: Callable[[Reply], Any]) -> dict:
        return {side.name: pick(reply) for side, reply in zip(self.sides, replies, strict=True)}

    def check(self) -> None:
        assert not self.problems, "Differences from the reference:\n" + "\n".join(
            self.problems + log_tail(self.ref, self.problems)
        )


def log_tail(side: Side, problems: list[str]) -> list[str]:
    """The end of the reference's stderr when it answered 500 (the cause is there)."""
    if not any("(reference: 500" in problem for problem in problems):
        return []
    return ["reference stderr (end):", side.log()[-3000:]]


@pytest.fixture
def servers(
    settings: Any, live_server: Any, reference_servers: Callable[..., Any]
) -> Iterator[Callable[[str], Run]]:
    """``servers(mode)``: a Run against both servers configured for auto, magic or both."""

    def make(mode: str) -> Run:
        settings.BETTER_CONSOLE = our_settings(mode)
        if not entered:
            # The reference sets the plain tenant setting itself: the opt-out serves both.
            stack.enter_context(unsigned_context(settings))
            entered.append(True)
        SENT.clear()
        reference = reference_servers(**reference_env(mode))
        return Run(reference_side(reference.url, reference.output), our_side(live_server.url))

    entered: list[bool] = []
    with ExitStack() as stack:
        yield make


# --- shared data ----------------------------------------------------------------------------------

SEED_TIME = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
NAMESPACE = uuid.UUID("6f1c3a52-3d0e-4e8b-9d7a-0c2b5e1f4a10")
MISSING = str(uuid.uuid5(NAMESPACE, "missing"))
# (name, slug), created a day apart in this order.
TENANTS = [
    ("Acme", "acme"),
    ("Globex", "globex"),
    ("Initech", "initech"),
    ("Umbrella", "umbrella"),
    ("Hooli", "hooli"),
    ("Reference target", "reference-target"),
    ("Our target", "ours-target"),
]
# (hours after SEED_TIME, table, operation, record, actor, severity, label, description,
# compliance). Every table, actor and day has its own count, so that the reference's statistics
# (ordered by count only) have one order. Entries 5 and 6 share their timestamp. No entry has a
# diff: ours are stored as {"changed_fields": [...]}, which the reference would echo as is.
LOGS = [
    (0, "invoices", "INSERT", "inv-1", "user-1", "low", "Invoice created", None, ["soc2"]),
    (1, "invoices", "UPDATE", "inv-1", "user-1", "medium", "Invoice updated", "Amount 10 to 12",
     ["soc2"]),
    (2, "customers", "INSERT", "cus-1", "user-2", None, "Customer created", None, []),
    (5, "payments", "INSERT", "pay-1", "user-1", "high", "Payment captured", None, ["pci"]),
    (24, "invoices", "UPDATE", "inv-2", "user-3", None, None, "Refund issued for inv-2", []),
    (25, "customers", "UPDATE", "cus-1", "user-2", "low", "Customer renamed", None, ["gdpr"]),
    (25, "customers", "DELETE", "cus-2", None, "critical", "Customer deleted", "GDPR erasure",
     ["gdpr"]),
    (26, "payments", "UPDATE", "pay-1", "user-1", "high", "Refund", "Partial refund", ["pci"]),
    (30, "invoices", "DELETE", "inv-3", "user-2", "medium", "Invoice voided", None, []),
    (48, "customers", "INSERT", "cus-3", "user-1", None, None, None, []),
    (49, "invoices", "INSERT", "inv-4", None, "low", "Invoice created", "100% discount_applied",
     []),
    (50, "payments", "DELETE", "pay-2", "user-3", None, "Payment deleted", None, []),
]  # fmt: skip


@dataclass(frozen=True)
class Seed:
    """Ids of the shared rows, by the names the cases use in their paths and queries."""

    tenants: list[str]
    logs: list[str]

    @property
    def names(self) -> dict[str, str]:
        names = {"missing": MISSING}
        names.update({f"tenant{i}": tenant for i, tenant in enumerate(self.tenants)})
        names.update({f"log{i}": log for i, log in enumerate(self.logs)})
        return names


def seed_logs(rows: list[tuple[Any, ...]], prefix: str) -> list[str]:
    """Committed ``audit_logs`` rows (system scope: the app role may not write all tenants')."""
    from better_audit.models import AuditLog
    from better_tenant import run_as_system
    from tests.support.audit import add_rows

    ids = []
    with run_as_system():
        for index, (hours, table, op, record, actor, severity, label, text, tags) in enumerate(
            rows
        ):
            [entry] = add_rows(
                AuditLog(
                    id=uuid.uuid5(NAMESPACE, f"{prefix}-{index}"),
                    timestamp=SEED_TIME + timedelta(hours=hours),
                    table_name=table,
                    operation=op,
                    record_id=record,
                    actor_id=actor,
                    severity=severity,
                    label=label,
                    description=text,
                    compliance=tags,
                    before_data={"id": record, "amount": 10} if op != "INSERT" else None,
                    after_data={"id": record, "amount": 12} if op != "DELETE" else None,
                    notify=True if severity == "critical" else None,
                    reason="customer request" if op == "DELETE" else None,
                    metadata={"ip": "10.0.0.1"} if actor == "user-2" else None,
                )
            )
            ids.append(str(entry.id))
    return ids


@pytest.fixture
def seed(live_server: Any) -> Seed:
    """The shared tenants and audit entries, committed so that both servers read them."""
    from better_tenant import run_as_system
    from better_tenant.models import Tenant

    tenants = []
    with run_as_system():
        for index, (name, slug) in enumerate(TENANTS):
            tenant = Tenant.objects.create(
                id=uuid.uuid5(NAMESPACE, f"tenant-{index}"), name=name, slug=slug
            )
            # created_at is auto_now_add: set it afterwards.
            Tenant.objects.filter(pk=tenant.pk).update(
                created_at=SEED_TIME - timedelta(days=len(TENANTS) - index)
            )
            tenants.append(str(tenant.pk))
    return Seed(tenants=tenants, logs=seed_logs(LOGS, "log"))


# --- single requests on the shared data -----------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One request sent alike to both servers; ``{name}`` in path, query or body is filled in
    from ``Seed.names`` plus ``side`` (``reference``/``ours``, for inputs that must differ)."""

    id: str
    method: str
    path: str
    query: Query | None = None
    body: Any = NO_BODY
    auth: str | None = "admin"
    values: bool = True
    headers: dict[str, str] | None = None
    normalize: Callable[[Any], Any] | None = None  # applied to both JSON bodies first


def untie(stats: Any) -> Any:
    """Statistics with the top lists' equal counts in name order.

    The reference orders ``topActors`` and ``topTables`` by count alone, so entries with equal
    counts come in whatever order PostgreSQL groups them.
    """
    if not isinstance(stats, dict):
        return stats
    for key, name in (("topActors", "actorId"), ("topTables", "tableName")):
        if isinstance(stats.get(key), list):
            stats[key] = sorted(stats[key], key=lambda item: (-item["count"], item[name]))
    return stats


def normalized(reply: Reply, normalize: Callable[[Any], Any]) -> Reply:
    if reply.kind != "json":
        return reply
    body = json.dumps(normalize(reply.json())).encode()
    return Reply(reply.status, reply.headers, body)


def fill(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**names)
    if isinstance(value, dict):
        return {key: fill(item, names) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(fill(item, names) for item in value)
    return value


T = "/tenant/tenants"
L = "/audit/logs"
S = "/audit/stats"
LONG = "x" * 1001
TENANT_CASES = [
    Case("tenant-list", "GET", T),
    Case("tenant-list-limit", "GET", T, {"limit": "2"}),
    Case("tenant-list-limit-offset", "GET", T, {"limit": "2", "offset": "2"}),
    Case("tenant-list-offset-past-end", "GET", T, {"offset": "50"}),
    Case("tenant-list-limit-0", "GET", T, {"limit": "0"}),
    Case("tenant-list-limit-5000", "GET", T, {"limit": "5000"}),
    Case("tenant-list-limit-abc", "GET", T, {"limit": "abc"}),
    Case("tenant-list-limit-fraction", "GET", T, {"limit": "2.7"}),
    Case("tenant-list-offset-negative", "GET", T, {"offset": "-1"}),
    Case("tenant-list-offset-abc", "GET", T, {"offset": "abc"}),
    Case("tenant-list-read-token", "GET", T, auth="read"),
    # The reference reads numbers with JavaScript's Number(): these are numbers to it.
    Case("tenant-list-limit-exponent", "GET", T, {"limit": "1e1"}),
    Case("tenant-list-limit-hex", "GET", T, {"limit": "0x3"}),
    Case("tenant-list-limit-spaces", "GET", T, {"limit": " 2 "}),
    Case("tenant-list-limit-empty", "GET", T, {"limit": ""}),
    Case("tenant-list-offset-empty", "GET", T, {"offset": "", "limit": "2"}),
    Case("tenant-list-limit-twice", "GET", T, [("limit", "1"), ("limit", "3")]),
    Case("tenant-list-trailing-slash", "GET", T + "/"),
    Case("tenant-get", "GET", T + "/{tenant1}"),
    Case("tenant-get-unknown", "GET", T + "/{missing}"),
    Case("tenant-get-non-uuid", "GET", T + "/not-a-uuid"),
    Case("tenant-stats", "GET", "/tenant/stats"),
    Case("tenant-create", "POST", T, body={"name": "New {side}", "slug": "new-{side}"},
         values=False),
    Case("tenant-create-no-body", "POST", T),
    Case("tenant-create-array-body", "POST", T, body=["x"]),
    Case("tenant-create-empty-name", "POST", T, body={"name": " ", "slug": "blank-{side}"}),
    Case("tenant-create-no-slug", "POST", T, body={"name": "No slug {side}"}),
    Case("tenant-create-long-name", "POST", T, body={"name": "n" * 256, "slug": "long-{side}"}),
    Case("tenant-create-name-number", "POST", T, body={"name": 5, "slug": "five-{side}"}),
    Case("tenant-create-bad-json", "POST", T, body=b"{not json",
         headers={"Content-Type": "application/json"}),
    Case("tenant-create-text-plain", "POST", T, body=b'{"name": "Plain", "slug": "plain"}',
         headers={"Content-Type": "text/plain"}),
    Case("tenant-create-duplicate-slug", "POST", T, body={"name": "Again", "slug": "acme"}),
    Case("tenant-create-long-slug", "POST", T, body={"name": "Long", "slug": "s" * 100}),
    Case("tenant-create-read-token", "POST", T, body={"name": "R", "slug": "r-{side}"},
         auth="read"),
    Case("tenant-patch", "PATCH", T + "/{side_target}", body={"name": "Renamed {side}"},
         values=False),
    Case("tenant-patch-empty", "PATCH", T + "/{side_target}", body={}, values=False),
    Case("tenant-patch-slug", "PATCH", T + "/{side_target}", body={"slug": "moved-{side}"},
         values=False),
    Case("tenant-patch-duplicate-slug", "PATCH", T + "/{side_target}", body={"slug": "acme"}),
    Case("tenant-patch-no-body", "PATCH", T + "/{side_target}"),
    Case("tenant-patch-long-name", "PATCH", T + "/{side_target}", body={"name": "n" * 256}),
    Case("tenant-patch-long-slug", "PATCH", T + "/{side_target}", body={"slug": "s" * 256}),
    Case("tenant-patch-unknown", "PATCH", T + "/{missing}", body={"name": "Nobody"}),
    Case("tenant-patch-non-uuid", "PATCH", T + "/not-a-uuid", body={"name": "Nobody"}),
    Case("tenant-delete", "DELETE", T + "/{side_target}", values=False),
    Case("tenant-delete-unknown", "DELETE", T + "/{missing}"),
    Case("tenant-delete-non-uuid", "DELETE", T + "/not-a-uuid"),
    Case("tenant-delete-write-token", "DELETE", T + "/{side_target}", auth="write"),
]  # fmt: skip
# No compliance filter: the reference queries that column as jsonb, ours is text[].
AUDIT_CASES = [
    Case("audit-logs", "GET", L),
    Case("audit-logs-limit", "GET", L, {"limit": "3"}),
    Case("audit-logs-limit-0", "GET", L, {"limit": "0"}),
    Case("audit-logs-limit-5000", "GET", L, {"limit": "5000"}),
    Case("audit-logs-limit-abc", "GET", L, {"limit": "abc"}),
    Case("audit-logs-limit-fraction", "GET", L, {"limit": "2.5"}),
    Case("audit-logs-direction-after", "GET", L, {"limit": "3", "direction": "after"}),
    Case("audit-logs-direction-before", "GET", L, {"limit": "3", "direction": "before"}),
    Case("audit-logs-direction-invalid", "GET", L, {"direction": "sideways"}),
    Case("audit-logs-order-asc", "GET", L, {"order": "asc", "limit": "4"}),
    Case("audit-logs-order-desc", "GET", L, {"order": "desc"}),
    Case("audit-logs-order-invalid", "GET", L, {"order": "up"}),
    Case("audit-logs-order-and-direction", "GET", L, {"order": "asc", "direction": "after"}),
    Case("audit-logs-around", "GET", L, {"around": "{log5}", "limit": "5"}),
    Case("audit-logs-around-default-limit", "GET", L, {"around": "{log9}"}),
    Case("audit-logs-around-unknown", "GET", L, {"around": "{missing}"}),
    Case("audit-logs-around-and-order", "GET", L, {"around": "{log5}", "order": "asc"}),
    Case("audit-logs-around-and-direction", "GET", L, {"around": "{log5}", "direction": "after"}),
    Case("audit-logs-around-and-cursor", "GET", L, {"around": "{log5}", "cursor": "abc"}),
    Case("audit-logs-around-non-uuid", "GET", L, {"around": "not-a-uuid"}),
    Case("audit-logs-table", "GET", L, {"tableName": "customers"}),
    Case("audit-logs-table-record", "GET", L, {"tableName": "invoices", "recordId": "inv-1"}),
    Case("audit-logs-record-alone", "GET", L, {"recordId": "inv-1"}),
    Case("audit-logs-actor", "GET", L, {"actorId": "user-2"}),
    Case("audit-logs-actors", "GET", L, {"actorId": "user-2,user-3"}),
    Case("audit-logs-operation", "GET", L, {"operation": "UPDATE"}),
    Case("audit-logs-operation-lowercase", "GET", L, {"operation": "delete"}),
    Case("audit-logs-operation-invalid", "GET", L, {"operation": "TRUNCATE"}),
    Case("audit-logs-operation-empty", "GET", L, {"operation": ""}),
    Case("audit-logs-severity", "GET", L, {"severity": "high"}),
    Case("audit-logs-severities", "GET", L, {"severity": "high,critical"}),
    Case("audit-logs-severity-invalid", "GET", L, {"severity": "urgent"}),
    Case("audit-logs-severity-empty", "GET", L, {"severity": ""}),
    Case("audit-logs-table-empty", "GET", L, {"tableName": ""}),
    Case("audit-logs-actors-empty-items", "GET", L, {"actorId": "user-3,,"}),
    Case("audit-logs-search-empty", "GET", L, {"search": ""}),
    Case("audit-logs-search", "GET", L, {"search": "refund"}),
    Case("audit-logs-search-wildcards", "GET", L, {"search": "100% discount_"}),
    Case("audit-logs-since", "GET", L, {"since": "2025-03-02T08:00:00.000Z"}),
    Case("audit-logs-until", "GET", L, {"until": "2025-03-02T09:00:00.000Z"}),
    Case("audit-logs-since-until", "GET", L,
         {"since": "2025-03-01T09:00:00Z", "until": "2025-03-02T14:00:00Z"}),
    Case("audit-logs-since-after-until", "GET", L,
         {"since": "2025-03-03T00:00:00Z", "until": "2025-03-02T00:00:00Z"}),
    Case("audit-logs-since-invalid", "GET", L, {"since": "yesterday-ish"}),
    Case("audit-logs-since-duration", "GET", L, {"since": "7d"}),
    Case("audit-logs-since-date-only", "GET", L, {"since": "2025-03-02"}),
    Case("audit-logs-until-date-only", "GET", L, {"until": "2025-03-02"}),
    Case("audit-logs-since-offset", "GET", L, {"since": "2025-03-02T10:00:00+02:00"}),
    Case("audit-logs-until-invalid", "GET", L, {"until": "not a date"}),
    Case("audit-logs-cursor-invalid", "GET", L, {"cursor": "not-a-cursor"}),
    Case("audit-logs-param-too-long", "GET", L, {"tableName": LONG}),
    Case("audit-logs-combined", "GET", L,
         {"tableName": "payments", "actorId": "user-1", "operation": "UPDATE",
          "severity": "high", "search": "refund", "order": "asc"}),
    Case("audit-log", "GET", L + "/{log3}"),
    Case("audit-log-trailing-slash", "GET", L + "/{log3}/"),
    Case("audit-log-unknown", "GET", L + "/{missing}"),
    Case("audit-log-non-uuid", "GET", L + "/not-a-uuid"),
    Case("audit-stats", "GET", S, normalize=untie),
    Case("audit-stats-since-until", "GET", S,
         {"since": "2025-03-02T00:00:00Z", "until": "2025-03-03T00:00:00Z"}, normalize=untie),
    Case("audit-stats-since-after-until", "GET", S,
         {"since": "2025-03-03T00:00:00Z", "until": "2025-03-02T00:00:00Z"}),
    Case("audit-stats-since-invalid", "GET", S, {"since": "soon"}),
    Case("audit-stats-since", "GET", S, {"since": "2025-03-02T00:00:00Z"}, normalize=untie),
    Case("audit-stats-until", "GET", S, {"until": "2025-03-02T09:00:00Z"}, normalize=untie),
    Case("audit-enrichments", "GET", "/audit/enrichments"),
    Case("audit-export-csv", "GET", "/audit/export"),
    Case("audit-export-json", "GET", "/audit/export", {"format": "json"}),
    Case("audit-export-json-filtered", "GET", "/audit/export",
         {"format": "json", "tableName": "invoices", "order": "asc"}),
    Case("audit-export-format-invalid", "GET", "/audit/export", {"format": "xml"}),
    Case("audit-export-json-limit", "GET", "/audit/export", {"format": "json", "limit": "2"}),
    Case("audit-export-csv-filtered", "GET", "/audit/export",
         {"tableName": "payments", "order": "asc"}),
    Case("audit-export-direction-before", "GET", "/audit/export",
         {"format": "json", "direction": "before"}),
    Case("audit-export-limit-invalid", "GET", "/audit/export", {"limit": "0"}),
    Case("audit-purge-no-body", "DELETE", L),
    Case("audit-purge-no-before", "DELETE", L, body={"tableName": "invoices"}),
    Case("audit-purge-before-invalid", "DELETE", L, body={"before": "someday"}),
    Case("audit-purge-before-number", "DELETE", L, body={"before": 1700000000}),
    Case("audit-purge-read-token", "DELETE", L, body={"before": "2025-01-01T00:00:00Z"},
         auth="read"),
    Case("audit-purge-write-token", "DELETE", L, body={"before": "2025-01-01T00:00:00Z"},
         auth="write"),
    Case("audit-purge-long-table", "DELETE", L,
         body={"before": "2025-01-01T00:00:00Z", "tableName": LONG}),
]  # fmt: skip
AUTH_CASES = [
    Case(f"auth-{name}-{method.lower()}", method, path, auth=auth)
    for name, auth in [
        ("missing", None),
        ("basic", "Basic dXNlcjpwYXNz"),
        ("bearer-empty", "Bearer"),
        ("bearer-two-parts", "Bearer a b"),
        ("malformed", "Bearer not-a-token"),
        ("forged", "forged"),
        ("expired", "expired"),
        ("lowercase-scheme", "lowercase"),
        ("two-spaces", "two-spaces"),
    ]
    for method, path in [("GET", "/tenant/stats"), ("DELETE", L)]
]
ROUTE_CASES = [
    Case("unknown-product-route", "GET", "/tenant/nothing"),
    Case("unknown-product-route-anonymous", "GET", "/tenant/nothing", auth=None),
    Case("unknown-product", "GET", "/nothing/here"),
    Case("empty-path", "GET", "/", auth=None),
    Case("tenant-wrong-method", "PUT", T),
    Case("tenant-stats-wrong-method", "POST", "/tenant/stats", body={}),
    Case("audit-log-wrong-method", "POST", L + "/{log0}", body={}),
    Case("audit-wrong-method-anonymous", "PUT", L, auth=None),
    Case("health-trailing-slash", "GET", "/console/health/", auth=None),
    Case("health-double-slashes", "GET", "//console//health", auth=None),
    Case("health-head", "HEAD", "/console/health", auth=None),
]


def send_case(side: Side, case: Case, names: dict[str, str]) -> Reply:
    names = {
        **names,
        "side": side.name,
        # Each server changes a tenant of its own, so that neither sees the other's change.
        "side_target": names["tenant5"] if side.name == "reference" else names["tenant6"],
    }
    body = case.body if case.body is NO_BODY else fill(case.body, names)
    query = fill(case.query, names) if case.query else None
    return side.call(
        case.method, fill(case.path, names), query=query, body=body, auth=case.auth,
        headers=case.headers,
    )  # fmt: skip


def params(cases: list[Case]) -> list[Any]:
    return [pytest.param(case, id=case.id) for case in cases]


@pytest.mark.parametrize("case", params(TENANT_CASES + AUDIT_CASES + AUTH_CASES + ROUTE_CASES))
def test_route(case: Case, servers: Callable[[str], Run], seed: Seed) -> None:
    run = servers("auto")
    ref = send_case(run.ref, case, seed.names)
    ours = send_case(run.ours, case, seed.names)
    if case.id in DELIBERATE_DIFFERENCES:
        status, reason = DELIBERATE_DIFFERENCES[case.id]
        assert ref.status == 500, f"the reference no longer fails ({reason}): {ref}"
        assert (ours.status, ours.kind) == (status, "json"), f"ours: {ours}"
        assert isinstance(ours.get("error"), str), f"ours: {ours}"
        return
    if case.id in EXTENDED_ANSWERS:
        ref_status, our_status, reason = EXTENDED_ANSWERS[case.id]
        assert ref.status == ref_status, f"the reference changed ({reason}): {ref}"
        assert (ours.status, ours.kind) == (our_status, "json"), f"ours ({reason}): {ours}"
        return
    if case.normalize is not None:
        ref, ours = normalized(ref, case.normalize), normalized(ours, case.normalize)
    exact = case.path.startswith(PRODUCT_PREFIXES)
    problems = differences(ref, ours, values=case.values, exact_errors=exact)
    problems += log_tail(run.ref, problems)
    assert not problems, f"{case.method} {case.path} {case.query or ''}:\n" + "\n".join(problems)


# --- sequences ------------------------------------------------------------------------------------


def test_audit_paging(servers: Callable[[str], Run], seed: Seed) -> None:
    """Forward through every page by each server's own nextCursor, then back by prevCursor."""
    run = servers("auto")
    cursors: dict[str, str | None] = {"reference": None, "ours": None}
    pages: list[tuple[Reply, Reply]] = []
    for page in range(1, 6):

        def send(side: Side, cursors: dict[str, str | None] = cursors) -> Reply:
            query = {"limit": "4"}
            if cursors[side.name]:
                query["cursor"] = cursors[side.name]
            return side.call("GET", L, query=query, auth="admin")

        replies = run.step(f"page {page}", send, values=True, exact_errors=True)
        pages.append(replies)
        cursors = run.per_side(replies, lambda reply: reply.get("nextCursor"))
        if not cursors["reference"]:
            break
    # Back from the last page towards the first.
    backs = run.per_side(pages[-1], lambda reply: reply.get("prevCursor"))
    run.step(
        "back from the last page",
        lambda side: side.call(
            "GET",
            L,
            query={"limit": "4", "direction": "before", "cursor": backs[side.name] or ""},
            auth="admin",
        ),
        values=True,
        exact_errors=True,
    )
    run.check()


def test_audit_purge(servers: Callable[[str], Run], seed: Seed) -> None:
    """Each server purges the old entries of a table of its own; both count the same."""
    run = servers("auto")
    old = [(-2400, "purge_reference", "INSERT", "p-1", None, None, None, None, [])] * 2
    seed_logs(old, "purge-reference")
    seed_logs([(row[0], "purge_ours", *row[2:]) for row in old], "purge-ours")
    for label in ("purge one table", "purge a table again"):
        run.step(
            label,
            lambda side: side.call(
                "DELETE",
                L,
                body={"before": "2025-01-01T00:00:00Z", "tableName": f"purge_{side.name}"},
                auth="admin",
            ),
            values=True,
            exact_errors=True,
        )
    run.check()


# --- console routes -------------------------------------------------------------------------------

MODES = ("auto", "magic", "both")


@pytest.mark.parametrize("mode", MODES)
def test_health_and_capabilities(mode: str, servers: Callable[[str], Run]) -> None:
    run = servers(mode)
    run.step("health", lambda side: side.call("GET", "/console/health"), values=True)
    ref, ours = (side.call("GET", "/console/capabilities") for side in run.sides)
    # The reference here registers only the tenant and audit products; ours may list more.
    products = ours.get("products")
    if isinstance(products, list) and isinstance(ref.get("products"), list):
        kept = [product for product in products if product in ref.get("products")]
        ours = Reply(
            ours.status,
            ours.headers,
            json.dumps({**ours.json(), "products": kept}).encode(),
        )
    run.problems += [
        f"capabilities: {p}" for p in differences(ref, ours, values=True, exact_errors=True)
    ]
    run.check()


JSON_TYPE = {"Content-Type": "application/json"}


def init(side: Side, body: Any = NO_BODY, headers: dict[str, str] | None = None) -> Reply:
    return side.call("POST", "/console/session/init", body=body, headers=headers)


@pytest.mark.parametrize("mode", ("auto", "both"))
def test_auto_approve(mode: str, servers: Callable[[str], Run]) -> None:
    run = servers(mode)
    for label, body in [
        ("init without a body", NO_BODY),
        ("init with {}", {}),
        ("init with an email", {"email": "dev@example.com"}),
    ]:
        replies = run.step(label, lambda side, body=body: init(side, body), values=True)
        tokens = run.per_side(replies, lambda reply: reply.get("sessionToken"))
        run.step(
            f"{label}: its token reads the stats",
            lambda side, tokens=tokens: side.call(
                "GET", "/tenant/stats", auth=f"Bearer {tokens[side.name]}"
            ),
            values=True,
        )
        run.step(
            f"{label}: its token may purge (admin)",
            lambda side, tokens=tokens: side.call(
                "DELETE", L, body={"before": "2000-01-01T00:00:00Z"},
                auth=f"Bearer {tokens[side.name]}",
            ),
            values=True,
        )  # fmt: skip
    # Malformed JSON is a 400 here; the reference reads it as no body and signs the default in.
    ref, ours = init(run.ref, b"{x", JSON_TYPE), init(run.ours, b"{x", JSON_TYPE)
    assert (ref.status, ours.status, ours.get("code")) == (200, 400, "INVALID_JSON"), (ref, ours)
    run.step(
        "init with a JSON body sent as text/plain",
        lambda side: init(side, b'{"email": "a@example.com"}', {"Content-Type": "text/plain"}),
        values=True,
    )
    run.check()


def test_magic_routes_absent_without_magic_link(servers: Callable[[str], Run]) -> None:
    run = servers("auto")
    sid = str(uuid.uuid4())
    run.step("verify", lambda s: s.call("POST", "/console/session/verify", body={}), values=True)
    run.step("verify page", lambda s: s.call("GET", "/console/session/verify"), values=True)
    run.step("poll", lambda s: s.call("GET", "/console/session/poll", query={"session_id": sid}))
    run.step("claim", lambda s: s.call("POST", "/console/session/claim", body={"session_id": sid}))
    run.check()


def start_link(run: Run, label: str, email: str) -> dict[str, str]:
    """Init a magic link on both servers; each one's session id (a stand-in when it failed)."""
    replies = run.step(label, lambda side: init(side, {"email": email}), values=True)
    return run.per_side(replies, lambda reply: reply.get("sessionId") or str(uuid.uuid4()))


def verify(side: Side, session_id: str, code: str | None) -> Reply:
    body = {"session_id": session_id, "code": code or "AAAAAA"}
    return side.call("POST", "/console/session/verify", body=body)


def poll(side: Side, session_id: str | None) -> Reply:
    query = None if session_id is None else {"session_id": session_id}
    return side.call("GET", "/console/session/poll", query=query)


def claim(side: Side, body: Any) -> Reply:
    return side.call("POST", "/console/session/claim", body=body)


def wrong_code(code: str | None) -> str:
    """A well-formed code that is not ``code``."""
    return "ABCDEF" if code != "ABCDEF" else "FEDCBA"


def test_magic_link_init(servers: Callable[[str], Run]) -> None:
    run = servers("magic")
    run.step("init without a body", lambda side: init(side))
    run.step("init without an email", lambda side: init(side, {}))
    run.step("init with a number as email", lambda side: init(side, {"email": 42}))
    run.step("init with an address not allowed", lambda side: init(side, {"email": "x@evil.test"}))
    run.step("init with malformed JSON", lambda side: init(side, b"{nope", JSON_TYPE))
    run.step(
        "init with a JSON body sent as text/plain",
        lambda side: init(side, b'{"email": "admin@example.com"}', {"Content-Type": "text/plain"}),
    )
    start_link(run, "init with an allowed address", "admin@example.com")
    start_link(run, "init with an address allowed by pattern", "Ops.One@OPS.example.com")
    run.check()


def test_magic_link_handshake(servers: Callable[[str], Run]) -> None:
    run = servers("magic")
    sid = start_link(run, "init", "flow@ops.example.com")
    code = {side.name: side.code_of(sid[side.name]) for side in run.sides}
    run.step("poll pending", lambda s: poll(s, sid[s.name]), values=True)
    run.step("claim before verify", lambda s: claim(s, {"session_id": sid[s.name]}), values=True)
    run.step("verify a wrong code", lambda s: verify(s, sid[s.name], wrong_code(code[s.name])))
    run.step("poll after a wrong code", lambda s: poll(s, sid[s.name]), values=True)
    run.step("verify the code", lambda s: verify(s, sid[s.name], code[s.name]), values=True)
    run.step("verify it again", lambda s: verify(s, sid[s.name], code[s.name]), values=True)
    run.step("poll verified", lambda s: poll(s, sid[s.name]), values=True)
    replies = run.step("claim", lambda s: claim(s, {"session_id": sid[s.name]}), values=True)
    tokens = run.per_side(replies, lambda reply: reply.get("sessionToken") or "none")
    run.step("claim again", lambda s: claim(s, {"session_id": sid[s.name]}), values=True)
    run.step(
        "the claimed token reads",
        lambda s: s.call("GET", "/tenant/stats", auth=f"Bearer {tokens[s.name]}"),
        values=True,
    )
    run.step(
        "the claimed token is admin",
        lambda s: s.call(
            "DELETE", L, body={"before": "2000-01-01T00:00:00Z"}, auth=f"Bearer {tokens[s.name]}"
        ),
        values=True,
    )
    run.check()


def test_magic_link_malformed(servers: Callable[[str], Run]) -> None:
    run = servers("magic")
    sid = start_link(run, "init", "malformed@ops.example.com")
    code = {side.name: side.code_of(sid[side.name]) for side in run.sides}
    verify_body = "/console/session/verify"
    for label, body in [
        ("no body", NO_BODY),
        ("{}", {}),
        ("no code", {"session_id": MISSING}),
        ("no session_id", {"code": "ABCDEF"}),
        ("code too short", {"session_id": MISSING, "code": "ABC"}),
        ("code with 0 and O", {"session_id": MISSING, "code": "O0O0O0"}),
        ("lowercase code", {"session_id": MISSING, "code": "abcdef"}),
        ("code a number", {"session_id": MISSING, "code": 123456}),
        ("session_id not a uuid", {"session_id": "sess_123", "code": "ABCDEF"}),
        ("unknown session_id", {"session_id": MISSING, "code": "ABCDEF"}),
    ]:
        run.step(
            f"verify: {label}",
            lambda s, body=body: s.call("POST", verify_body, body=body),
            values=True,
        )
    run.step(
        "verify: camelCase sessionId",
        lambda s: s.call("POST", verify_body, body={"sessionId": sid[s.name], "code": "ABCDEF"}),
        values=True,
    )
    run.step("poll: no session_id", lambda s: poll(s, None), values=True)
    run.step("poll: empty session_id", lambda s: poll(s, ""), values=True)
    run.step("poll: not a uuid", lambda s: poll(s, "sess_123"), values=True)
    run.step("poll: unknown", lambda s: poll(s, MISSING), values=True)
    run.step("poll: the id in capitals", lambda s: poll(s, sid[s.name].upper()), values=True)
    for label, body in [
        ("no body", NO_BODY),
        ("{}", {}),
        ("not a uuid", {"session_id": "sess_123"}),
        ("a number", {"session_id": 7}),
        ("unknown", {"session_id": MISSING}),
        ("camelCase sessionId", {"sessionId": MISSING}),
    ]:
        run.step(f"claim: {label}", lambda s, body=body: claim(s, body), values=True)
    # The link is still good after all that.
    run.step("verify the code", lambda s: verify(s, sid[s.name], code[s.name]), values=True)
    run.check()


def test_magic_link_lockout(servers: Callable[[str], Run]) -> None:
    run = servers("magic")
    sid = start_link(run, "init", "lockout@ops.example.com")
    code = {side.name: side.code_of(sid[side.name]) for side in run.sides}
    for attempt in range(1, MAX_ATTEMPTS + 1):
        run.step(
            f"wrong code {attempt}", lambda s: verify(s, sid[s.name], wrong_code(code[s.name]))
        )
    run.step("the right code, locked", lambda s: verify(s, sid[s.name], code[s.name]), values=True)
    run.step("a wrong code, locked", lambda s: verify(s, sid[s.name], wrong_code(code[s.name])))
    run.step("poll a locked link", lambda s: poll(s, sid[s.name]), values=True)
    run.step("claim a locked link", lambda s: claim(s, {"session_id": sid[s.name]}), values=True)
    run.check()


def test_magic_link_expiry(servers: Callable[[str], Run]) -> None:
    run = servers("magic")
    sid = start_link(run, "init", "expiry@ops.example.com")
    code = {side.name: side.code_of(sid[side.name]) for side in run.sides}
    for side in run.sides:
        side.expire(sid[side.name], 3600)
    run.step("poll an expired link", lambda s: poll(s, sid[s.name]), values=True)
    run.step("verify an expired link", lambda s: verify(s, sid[s.name], code[s.name]), values=True)
    run.step("claim an expired link", lambda s: claim(s, {"session_id": sid[s.name]}), values=True)

    # Verified, then expired: within the claim's grace minute, then past it.
    sid = start_link(run, "init a second link", "expiry@ops.example.com")
    code = {side.name: side.code_of(sid[side.name]) for side in run.sides}
    run.step("verify it", lambda s: verify(s, sid[s.name], code[s.name]), values=True)
    for side in run.sides:
        side.expire(sid[side.name], 3600)
    run.step("poll it, expired", lambda s: poll(s, sid[s.name]), values=True)
    run.step("claim it past the grace", lambda s: claim(s, {"session_id": sid[s.name]}))

    sid = start_link(run, "init a third link", "expiry@ops.example.com")
    code = {side.name: side.code_of(sid[side.name]) for side in run.sides}
    run.step("verify the third", lambda s: verify(s, sid[s.name], code[s.name]), values=True)
    for side in run.sides:
        side.expire(sid[side.name], 10)
    run.step(
        "claim it within the grace", lambda s: claim(s, {"session_id": sid[s.name]}), values=True
    )
    run.check()


def verify_page(side: Side, session_id: str | None, code: str | None) -> Reply:
    query = {key: value for key, value in (("session_id", session_id), ("code", code)) if value}
    return side.call("GET", "/console/session/verify", query=query or None)


def test_magic_link_verify_page(servers: Callable[[str], Run]) -> None:
    run = servers("magic")
    sid = start_link(run, "init", "page@ops.example.com")
    code = {side.name: side.code_of(sid[side.name]) for side in run.sides}
    run.step("no parameters", lambda s: verify_page(s, None, None))
    run.step("no code", lambda s: verify_page(s, sid[s.name], None))
    run.step("bad code format", lambda s: verify_page(s, sid[s.name], "abc"))
    run.step("bad session_id", lambda s: verify_page(s, "sess_1", code[s.name]))
    run.step("unknown session_id", lambda s: verify_page(s, MISSING, "ABCDEF"))
    run.step("wrong code", lambda s: verify_page(s, sid[s.name], wrong_code(code[s.name])))
    run.step("the code", lambda s: verify_page(s, sid[s.name], code[s.name]))
    run.step("the code again", lambda s: verify_page(s, sid[s.name], code[s.name]))
    run.step("poll after the page", lambda s: poll(s, sid[s.name]), values=True)
    run.check()


def test_magic_link_stateless_tokens(servers: Callable[[str], Run]) -> None:
    """With magic links only, tokens signed by the secret keep working on the product routes."""
    run = servers("magic")
    run.step("read token", lambda s: s.call("GET", "/tenant/stats", auth="read"), values=True)
    run.step("expired token", lambda s: s.call("GET", "/tenant/stats", auth="expired"))
    run.check()


# --- CORS -----------------------------------------------------------------------------------------

PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "content-type",
}
CORS_ORIGINS = [
    "https://console.usebetter.dev",
    "http://localhost:5173",
    "http://localhost:3000",
    "http://127.0.0.1:8080",
    "http://localhost",
    "https://evil.example",
    "HTTPS://CONSOLE.USEBETTER.DEV",
    "https://console.usebetter.dev/",
    "null",
    "http://app.localhost:3000",
    "http://[::1]:3000",
]


@pytest.mark.parametrize("origin", CORS_ORIGINS)
def test_cors(origin: str, servers: Callable[[str], Run]) -> None:
    run = servers("auto")
    headers = {"Origin": origin}
    for label, method, path, extra in [
        ("preflight of session/init", "OPTIONS", "/console/session/init", PREFLIGHT),
        ("preflight of a product route", "OPTIONS", T + "/" + MISSING, PREFLIGHT),
        ("preflight of an unknown route", "OPTIONS", "/console/nothing", PREFLIGHT),
        ("preflight of a magic link route", "OPTIONS", "/console/session/poll", PREFLIGHT),
        ("health", "GET", "/console/health", {}),
        ("an unknown route", "GET", "/console/nothing", {}),
    ]:
        run.step(
            label,
            lambda s, method=method, path=path, extra=extra: s.call(
                method, path, headers={**headers, **extra}
            ),
            values=True,
        )
    run.step(
        "a product route without a token",
        lambda s: s.call("GET", "/tenant/stats", headers=headers),
        values=True,
    )
    run.step(
        "a product route",
        lambda s: s.call("GET", "/tenant/stats", headers=headers, auth="read"),
        values=True,
    )
    run.step(
        "session/init",
        lambda s: s.call("POST", "/console/session/init", headers=headers, body={}),
        values=True,
    )
    run.check()


def test_cors_magic_link_preflight(servers: Callable[[str], Run]) -> None:
    run = servers("magic")
    headers = {"Origin": ORIGINS[0], **PREFLIGHT}
    for path in ("/console/session/verify", "/console/session/poll", "/console/session/claim"):
        run.step(path, lambda s, path=path: s.call("OPTIONS", path, headers=headers), values=True)
    run.check()


def test_console_wrong_methods(servers: Callable[[str], Run]) -> None:
    run = servers("magic")
    for method, path in [
        ("POST", "/console/health"),
        ("GET", "/console/session/init"),
        ("DELETE", "/console/capabilities"),
        ("PUT", "/console/session/verify"),
        ("POST", "/console/session/poll"),
        ("GET", "/console/session/claim"),
        ("GET", "/console"),
        ("GET", "/console/session"),
    ]:
        run.step(f"{method} {path}", lambda s, m=method, p=path: s.call(m, p), values=True)
    run.check()


def test_reference_answers(reference_servers: Callable[..., Any]) -> None:
    """The reference side runs: health, capabilities, both sign-ins and the product routes."""
    auto = reference_side(reference_servers(**reference_env("auto")).url)
    assert auto.call("GET", "/console/health").json() == {"status": "ok"}
    assert auto.call("GET", "/console/capabilities").json() == {
        "products": ["tenant", "audit"],
        "authMethods": ["auto_approve"],
        "permissions": ["read", "write", "admin"],
    }
    session = init(auto, {}).json()
    assert session["method"] == "auto_approve" and session["expiresIn"] == 86400
    token = f"Bearer {session['sessionToken']}"
    assert auto.call("GET", "/tenant/stats", auth=token).status == 200
    assert auto.call("GET", L, auth=token).json()["entries"] is not None
    assert auto.call("GET", "/audit/stats", auth=token).status == 200

    magic = reference_side(reference_servers(**reference_env("magic")).url)
    sid = init(magic, {"email": "admin@example.com"}).json()["sessionId"]
    assert poll(magic, sid).json() == {"status": "pending"}
    assert verify(magic, sid, magic.code_of(sid)).json() == {"status": "verified"}
    claimed = claim(magic, {"session_id": sid}).json()
    assert claimed["status"] == "claimed"
    assert claim(magic, {"session_id": sid}).json() == {"status": "already_claimed"}
    stats = magic.call("GET", "/tenant/stats", auth=f"Bearer {claimed['sessionToken']}")
    assert stats.status == 200 and "tenantCount" in stats.json()


def test_session_tokens_cross_over_one_way(servers: Callable[[str], Run]) -> None:
    """Our session tokens carry the published claims, so the reference reads them; its tokens
    lack our hardening claims (aud, exp, jti, ...), so ours refuses them."""
    run = servers("auto")
    ours = init(run.ours, {"email": "ops@example.com"}).json()["sessionToken"]
    theirs = init(run.ref, {"email": "ops@example.com"}).json()["sessionToken"]

    claims = jwt.decode(ours, options={"verify_signature": False})
    assert claims["permissions"] == "admin" and claims["email"] == "ops@example.com"
    assert claims["expiresAt"] == claims["exp"] and str(uuid.UUID(claims["sessionId"]))
    read = run.ref.call("GET", "/tenant/stats", auth=f"Bearer {ours}")
    assert read.status == 200 and "tenantCount" in read.json(), read
    purge = run.ref.call(
        "DELETE", L, body={"before": "2000-01-01T00:00:00Z"}, auth=f"Bearer {ours}"
    )
    assert purge.status == 200, purge

    refused = run.ours.call("GET", "/tenant/stats", auth=f"Bearer {theirs}")
    assert (refused.status, refused.get("error")) == (401, "Invalid or expired session"), refused
