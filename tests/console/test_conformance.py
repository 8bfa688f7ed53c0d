"""The console protocol fact by fact: what a client of the published console servers relies on."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from better_audit.models import AuditLog
from better_console.models import MagicLink
from better_console.testing import session_token
from better_tenant import run_as_system
from better_tenant.api import create_tenant
from tests.support.audit import add_rows
from tests.support.console import BASE, SENT

pytestmark = pytest.mark.django_db

CONSOLE = "https://console.usebetter.dev"
CORS = {
    "Access-Control-Allow-Origin": "{origin}",
    "Access-Control-Allow-Methods": "GET, POST, PUT, PATCH, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
}
PREFLIGHT = {**CORS, "Access-Control-Max-Age": "86400"}
NO_CORS = ("Access-Control-Allow-Origin", "Access-Control-Allow-Methods")
ANY = object()


@dataclass
class Fact:
    """One thing the protocol promises: a request and what must come back.

    ``{name}`` in the path, query, body and expected values stands for a value of the ``world``
    fixture (ids of seeded rows, session ids, codes). ``body`` is the exact JSON answer (``ANY``
    matches any value), ``keys`` the exact key set of a JSON object, ``error`` the error text.
    """

    says: str
    method: str
    path: str
    status: int
    send: Any = None
    auth: str | None = None
    origin: str | None = None
    body: Any = None
    keys: set[str] | None = None
    error: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    no_headers: tuple[str, ...] = ()
    content_type: str = "application/json"
    auto_approve: bool = False


FACTS = [
    # --- routing and CORS
    Fact("health answers ok to anyone", "GET", "/console/health", 200, body={"status": "ok"}),
    Fact(
        "capabilities list the products, the sign-in methods and the levels",
        "GET",
        "/console/capabilities",
        200,
        keys={"products", "authMethods", "permissions"},
    ),
    Fact("an unknown route is a JSON 404", "GET", "/console/nothing", 404, error="Not found"),
    Fact("an unknown product is a JSON 404", "GET", "/nothing/here", 404, error="Not found"),
    Fact(
        "a known path under another method is not found",
        "GET",
        "/console/session/init",
        404,
        error="Not found",
    ),
    Fact(
        "a wrong method on a product path is not found, before any token is asked for",
        "PUT",
        "/tenant/tenants",
        404,
        error="Not found",
    ),
    Fact(
        "an allowed origin gets its CORS headers on every answer",
        "GET",
        "/console/health",
        200,
        origin=CONSOLE,
        headers=CORS,
    ),
    Fact(
        "an error answer carries the CORS headers too",
        "GET",
        "/nothing",
        404,
        origin=CONSOLE,
        headers=CORS,
    ),
    Fact(
        "an unknown origin gets no CORS headers",
        "GET",
        "/console/health",
        200,
        origin="https://evil.example",
        no_headers=NO_CORS,
    ),
    Fact(
        "a local origin on any port is allowed while developing or testing",
        "GET",
        "/console/health",
        200,
        origin="http://localhost:3000",
        headers=CORS,
    ),
    Fact(
        "127.0.0.1 counts as local too",
        "GET",
        "/console/health",
        200,
        origin="http://127.0.0.1:8080",
        headers=CORS,
    ),
    Fact(
        "a host merely named like localhost is not local",
        "GET",
        "/console/health",
        200,
        origin="http://localhost.evil.example",
        no_headers=NO_CORS,
    ),
    Fact(
        "a preflight of a known route is an empty 204 with the preflight headers",
        "OPTIONS",
        "/tenant/tenants/{acme}",
        204,
        origin=CONSOLE,
        headers=PREFLIGHT,
        content_type="",
    ),
    Fact(
        "a preflight from an unknown origin is a 204 without CORS headers",
        "OPTIONS",
        "/console/session/init",
        204,
        origin="https://evil.example",
        no_headers=(*NO_CORS, "Access-Control-Max-Age"),
        content_type="",
    ),
    Fact(
        "a preflight of an unknown route is a 404",
        "OPTIONS",
        "/nothing/here",
        404,
        origin=CONSOLE,
        error="Not found",
    ),
    # --- session init
    Fact(
        "auto-approve answers its method, a token and its lifetime",
        "POST",
        "/console/session/init",
        200,
        send={"email": "dev@example.com"},
        keys={"method", "sessionToken", "expiresIn"},
        auto_approve=True,
    ),
    Fact(
        "magic link answers its method and a session id",
        "POST",
        "/console/session/init",
        200,
        send={"email": "admin@example.com"},
        keys={"method", "sessionId"},
    ),
    Fact(
        "magic link needs an email",
        "POST",
        "/console/session/init",
        400,
        send={},
        keys={"error", "code"},
    ),
    Fact(
        "an address outside the allow-list is a 400 EMAIL_NOT_ALLOWED",
        "POST",
        "/console/session/init",
        400,
        send={"email": "someone@elsewhere.example"},
        keys={"error", "code"},
    ),
    # --- verify, poll, claim
    Fact(
        "verify takes session_id and code in its body",
        "POST",
        "/console/session/verify",
        200,
        send={"session_id": "{pending}", "code": "{pending_code}"},
        body={"status": "verified"},
    ),
    Fact(
        "verify without a code",
        "POST",
        "/console/session/verify",
        400,
        send={"session_id": "{pending}"},
        error="Missing code or session_id",
    ),
    Fact(
        "verify of a code in another format",
        "POST",
        "/console/session/verify",
        400,
        send={"session_id": "{pending}", "code": "abc"},
        error="Invalid code format",
    ),
    Fact(
        "verify of a session id that is not a UUID",
        "POST",
        "/console/session/verify",
        400,
        send={"session_id": "sess_1", "code": "ABCDEF"},
        error="Invalid session_id format",
    ),
    Fact(
        "verify of an unknown link",
        "POST",
        "/console/session/verify",
        404,
        send={"session_id": "{unknown}", "code": "ABCDEF"},
        error="Magic link not found",
    ),
    Fact(
        "verify of a wrong code",
        "POST",
        "/console/session/verify",
        401,
        send={"session_id": "{pending}", "code": "{wrong_code}"},
        error="Invalid code",
    ),
    Fact(
        "verify of a used link",
        "POST",
        "/console/session/verify",
        410,
        send={"session_id": "{verified}", "code": "{verified_code}"},
        error="Magic link already used",
    ),
    Fact(
        "verify of an expired link",
        "POST",
        "/console/session/verify",
        410,
        send={"session_id": "{expired}", "code": "{expired_code}"},
        error="Magic link expired",
    ),
    Fact(
        "verify of a locked link, even with the right code",
        "POST",
        "/console/session/verify",
        429,
        send={"session_id": "{locked}", "code": "{locked_code}"},
        error="Too many failed attempts",
    ),
    Fact(
        "the mailed link's page verifies in HTML",
        "GET",
        "/console/session/verify?session_id={pending}&code={pending_code}",
        200,
        content_type="text/html; charset=utf-8",
    ),
    Fact(
        "the mailed link's page says why not, with the status",
        "GET",
        "/console/session/verify?session_id={verified}&code={verified_code}",
        410,
        content_type="text/html; charset=utf-8",
    ),
    Fact(
        "poll of a pending link",
        "GET",
        "/console/session/poll?session_id={pending}",
        200,
        body={"status": "pending"},
    ),
    Fact(
        "poll of a verified link",
        "GET",
        "/console/session/poll?session_id={verified}",
        200,
        body={"status": "verified"},
    ),
    Fact(
        "poll of a claimed link still says verified",
        "GET",
        "/console/session/poll?session_id={claimed}",
        200,
        body={"status": "verified"},
    ),
    Fact(
        "poll of an expired link",
        "GET",
        "/console/session/poll?session_id={expired}",
        200,
        body={"status": "expired"},
    ),
    Fact(
        "poll without a session id",
        "GET",
        "/console/session/poll",
        400,
        error="Missing session_id",
    ),
    Fact(
        "poll reads session_id, not sessionId",
        "GET",
        "/console/session/poll?sessionId={pending}",
        400,
        error="Missing session_id",
    ),
    Fact(
        "poll of an unknown link",
        "GET",
        "/console/session/poll?session_id={unknown}",
        404,
        error="Magic link not found",
    ),
    Fact(
        "claim of a verified link hands out the token once",
        "POST",
        "/console/session/claim",
        200,
        send={"session_id": "{verified}"},
        keys={"status", "sessionToken", "expiresIn"},
    ),
    Fact(
        "claim of a claimed link hands out nothing",
        "POST",
        "/console/session/claim",
        200,
        send={"session_id": "{claimed}"},
        body={"status": "already_claimed"},
    ),
    Fact(
        "claim before verify",
        "POST",
        "/console/session/claim",
        409,
        send={"session_id": "{pending}"},
        error="Magic link not yet verified",
    ),
    Fact(
        "claim without a session id",
        "POST",
        "/console/session/claim",
        400,
        send={},
        error="Missing session_id",
    ),
    # --- sessions on product routes
    Fact(
        "a product route without a token",
        "GET",
        "/tenant/tenants",
        401,
        error="Missing session token",
    ),
    Fact(
        "a product route with a forged token",
        "GET",
        "/tenant/tenants",
        401,
        auth="forged",
        error="Invalid or expired session",
    ),
    Fact(
        "a product route above the session's level",
        "DELETE",
        "/tenant/tenants/{acme}",
        403,
        auth="read",
        error="Insufficient permissions",
    ),
    # --- tenant product
    Fact(
        "tenants are a bare array, oldest first",
        "GET",
        "/tenant/tenants",
        200,
        auth="read",
        body=[
            {"id": "{acme}", "name": "Acme", "slug": "acme", "createdAt": ANY},
            {"id": "{globex}", "name": "Globex", "slug": "globex", "createdAt": ANY},
        ],
    ),
    Fact(
        "tenants page by limit and offset",
        "GET",
        "/tenant/tenants?limit=1&offset=1",
        200,
        auth="read",
        body=[{"id": "{globex}", "name": "Globex", "slug": "globex", "createdAt": ANY}],
    ),
    Fact(
        "a limit above 1000 is capped, not refused",
        "GET",
        "/tenant/tenants?limit=5000",
        200,
        auth="read",
        body=[ANY, ANY],
    ),
    Fact(
        "a limit below 1 is refused",
        "GET",
        "/tenant/tenants?limit=0",
        400,
        auth="read",
        error="Invalid 'limit': must be a positive integer (max 1000)",
    ),
    Fact(
        "a negative offset is refused",
        "GET",
        "/tenant/tenants?offset=-1",
        400,
        auth="read",
        error="Invalid 'offset': must be a non-negative integer",
    ),
    Fact(
        "tenant stats count the tenants",
        "GET",
        "/tenant/stats",
        200,
        auth="read",
        body={"tenantCount": 2},
    ),
    Fact(
        "one tenant",
        "GET",
        "/tenant/tenants/{acme}",
        200,
        auth="read",
        body={"id": "{acme}", "name": "Acme", "slug": "acme", "createdAt": ANY},
    ),
    Fact(
        "an unknown tenant",
        "GET",
        "/tenant/tenants/{unknown}",
        404,
        auth="read",
        error="Tenant not found",
    ),
    Fact(
        "creating a tenant answers 201 with it",
        "POST",
        "/tenant/tenants",
        201,
        auth="write",
        send={"name": "Initech", "slug": "initech"},
        keys={"id", "name", "slug", "createdAt"},
    ),
    Fact(
        "creating needs a name and a slug",
        "POST",
        "/tenant/tenants",
        400,
        auth="write",
        send={"name": "Initech"},
        error="name and slug are required",
    ),
    Fact(
        "creating needs a JSON object",
        "POST",
        "/tenant/tenants",
        400,
        auth="write",
        send=["Initech"],
        error="Request body is required",
    ),
    Fact(
        "renaming answers the tenant",
        "PATCH",
        "/tenant/tenants/{acme}",
        200,
        auth="write",
        send={"name": "Acme Corp"},
        body={"id": "{acme}", "name": "Acme Corp", "slug": "acme", "createdAt": ANY},
    ),
    Fact(
        "deleting answers an empty 204",
        "DELETE",
        "/tenant/tenants/{globex}",
        204,
        auth="admin",
        content_type="",
    ),
    Fact(
        "deleting an unknown tenant is a 204 too",
        "DELETE",
        "/tenant/tenants/{unknown}",
        204,
        auth="admin",
        content_type="",
    ),
    # --- audit product
    Fact(
        "the audit log is an envelope, newest first",
        "GET",
        "/audit/logs?limit=2",
        200,
        auth="read",
        body={
            "entries": [
                {
                    "id": "{entry3}",
                    "timestamp": "2026-03-03T00:00:00.000Z",
                    "tableName": "invoices",
                    "operation": "DELETE",
                    "recordId": "3",
                    "compliance": [],
                    "redactedFields": [],
                },
                {
                    "id": "{entry2}",
                    "timestamp": "2026-03-02T00:00:00.000Z",
                    "tableName": "invoices",
                    "operation": "UPDATE",
                    "recordId": "2",
                    "actorId": "user-1",
                    "severity": "high",
                    "label": "Invoice paid",
                    "compliance": ["soc2"],
                    "redactedFields": [],
                },
            ],
            "hasNextPage": True,
            "nextCursor": ANY,
        },
    ),
    Fact(
        "the audit log pages around one entry",
        "GET",
        "/audit/logs?around={entry2}&limit=3",
        200,
        auth="read",
        keys={"entries", "hasNextPage"},
    ),
    Fact(
        "an unknown anchor gives an empty page",
        "GET",
        "/audit/logs?around={unknown}",
        200,
        auth="read",
        body={"entries": [], "hasNextPage": False},
    ),
    Fact(
        "direction must be after or before",
        "GET",
        "/audit/logs?direction=sideways",
        400,
        auth="read",
        error="Invalid 'direction': must be 'after' or 'before'",
    ),
    Fact(
        "order and direction do not combine",
        "GET",
        "/audit/logs?order=asc&direction=after",
        400,
        auth="read",
        error="'order' cannot be combined with 'direction'",
    ),
    Fact(
        "around does not combine with a cursor",
        "GET",
        "/audit/logs?around={entry2}&cursor=x",
        400,
        auth="read",
        error="'around' cannot be combined with 'cursor', 'direction', or 'order'",
    ),
    Fact(
        "recordId needs tableName",
        "GET",
        "/audit/logs?recordId=1",
        400,
        auth="read",
        error="'recordId' requires 'tableName'",
    ),
    Fact(
        "since must come before until",
        "GET",
        "/audit/logs?since=2026-03-02&until=2026-03-01",
        400,
        auth="read",
        error="'since' must be before 'until'",
    ),
    Fact(
        "one entry",
        "GET",
        "/audit/logs/{entry1}",
        200,
        auth="read",
        keys={
            "id",
            "timestamp",
            "tableName",
            "operation",
            "recordId",
            "actorId",
            "compliance",
            "redactedFields",
            "afterData",
        },
    ),
    Fact(
        "an unknown entry",
        "GET",
        "/audit/logs/{unknown}",
        404,
        auth="read",
        error="Audit log not found",
    ),
    Fact(
        "stats over a window",
        "GET",
        "/audit/stats?since=2026-03-02T00:00:00Z&until=2026-03-04T00:00:00Z",
        200,
        auth="read",
        body={
            "totalLogs": 2,
            "tablesAudited": 1,
            "eventsPerDay": [
                {"date": "2026-03-02", "count": 1},
                {"date": "2026-03-03", "count": 1},
            ],
            "topActors": [{"actorId": "user-1", "count": 1}],
            "topTables": [{"tableName": "invoices", "count": 2}],
            "operationBreakdown": {"UPDATE": 1, "DELETE": 1},
            "severityBreakdown": {"high": 1},
        },
    ),
    Fact(
        "the enrichment rules",
        "GET",
        "/audit/enrichments",
        200,
        auth="read",
        body=[
            {
                "table": "invoices",
                "operation": "UPDATE",
                "label": "Invoice paid",
                "severity": "high",
                "compliance": ["soc2"],
            }
        ],
    ),
    Fact(
        "an export is CSV unless asked otherwise",
        "GET",
        "/audit/export",
        200,
        auth="read",
        content_type="text/csv; charset=utf-8",
        headers={"Cache-Control": "no-cache"},
    ),
    Fact(
        "an export format is csv or json",
        "GET",
        "/audit/export?format=xml",
        400,
        auth="read",
        error="Invalid format. Must be 'csv' or 'json'",
    ),
    Fact(
        "a purge needs admin",
        "DELETE",
        "/audit/logs",
        403,
        auth="write",
        send={"before": "2026-03-02T00:00:00Z"},
        error="Insufficient permissions",
    ),
    Fact(
        "a purge deletes what is older and counts it",
        "DELETE",
        "/audit/logs",
        200,
        auth="admin",
        send={"before": "2026-03-02T00:00:00Z"},
        body={"deletedCount": 1},
    ),
    Fact(
        "a purge needs its before",
        "DELETE",
        "/audit/logs",
        400,
        auth="admin",
        send={"tableName": "invoices"},
        error="Missing required field: before",
    ),
]


def _link(world: dict[str, Any], name: str, **state: Any) -> None:
    from django.test import Client

    response = Client().post(
        f"{BASE}/console/session/init",
        json.dumps({"email": "admin@example.com"}),
        content_type="application/json",
    )
    world[name] = response.json()["sessionId"]
    world[f"{name}_code"] = SENT[-1]["code"]
    if state:
        MagicLink.objects.filter(session_id=world[name]).update(**state)


@pytest.fixture
def world(magic_only, configure) -> dict[str, Any]:
    from better_audit import enrichment

    configure(
        THROTTLE=None,
        AUTO_APPROVE=False,
        MAGIC_LINK={
            "ALLOWED_EMAILS": ["admin@example.com"],
            "SEND_CODE": "tests.support.console.capture_code",
        },
    )
    world: dict[str, Any] = {"unknown": str(uuid.uuid4())}
    acme = create_tenant("Acme", "acme")
    globex = create_tenant("Globex", "globex")
    world.update(acme=str(acme.id), globex=str(globex.id))
    now = timezone.now()
    _link(world, "pending")
    _link(world, "verified", verified_at=now)
    _link(world, "claimed", verified_at=now, token_hash="0" * 64, claimed_at=now)
    _link(world, "expired", expires_at=now - timedelta(minutes=5))
    _link(world, "locked", failed_attempts=5)
    code = world["pending_code"]
    world["wrong_code"] = "".join("A" if c != "A" else "B" for c in code)
    rows = [
        {"record_id": "1", "operation": "INSERT", "actor_id": "user-1", "after_data": {"n": 1}},
        {
            "record_id": "2",
            "operation": "UPDATE",
            "actor_id": "user-1",
            "severity": "high",
            "label": "Invoice paid",
            "compliance": ["soc2"],
        },
        {"record_id": "3", "operation": "DELETE"},
    ]
    with run_as_system():
        for day, row in enumerate(rows, start=1):
            [entry] = add_rows(
                AuditLog(table_name="invoices", timestamp=datetime(2026, 3, day, tzinfo=UTC), **row)
            )
            world[f"entry{day}"] = str(entry.id)
    enrichment.enrich(
        "invoices", "UPDATE", label="Invoice paid", severity="high", compliance=["soc2"]
    )
    yield world
    enrichment.registry.clear()


def _fill(value: Any, world: dict[str, Any]) -> Any:
    if isinstance(value, str):
        return value.format(**world)
    if isinstance(value, dict):
        return {key: _fill(item, world) for key, item in value.items()}
    if isinstance(value, list):
        return [_fill(item, world) for item in value]
    return value


def _matches(expected: Any, actual: Any) -> bool:
    if expected is ANY:
        return True
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and set(expected) == set(actual)
            and all(_matches(expected[key], actual[key]) for key in expected)
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(_matches(e, a) for e, a in zip(expected, actual, strict=True))
        )
    return expected == actual


def _auth(level: str | None, world: dict[str, Any]) -> dict[str, str]:
    if level is None:
        return {}
    if level == "forged":
        token = session_token("admin", stateless=True)
        head, payload, _ = token.split(".")
        return {"HTTP_AUTHORIZATION": f"Bearer {head}.{payload}.forged-signature"}
    return {"HTTP_AUTHORIZATION": f"Bearer {session_token(level)}"}


@pytest.mark.parametrize("fact", FACTS, ids=[fact.says for fact in FACTS])
def test_the_protocol_holds(client, world, configure, fact: Fact):
    if fact.auto_approve:
        configure(AUTO_APPROVE=True)
    world["origin"] = fact.origin or ""
    extra = _auth(fact.auth, world)
    if fact.origin:
        extra["HTTP_ORIGIN"] = fact.origin
    path = _fill(fact.path, world)
    data = "" if fact.send is None else json.dumps(_fill(fact.send, world))
    response = client.generic(
        fact.method, BASE + path, data, content_type="application/json", **extra
    )

    assert response.status_code == fact.status, response.content
    assert response.get("Content-Type", "") == fact.content_type
    for name, value in _fill(fact.headers, world).items():
        assert response.get(name) == value, name
    for name in fact.no_headers:
        assert name not in response, name
    if fact.content_type != "application/json":
        return
    body = response.json()
    if fact.body is not None:
        assert _matches(_fill(fact.body, world), body), body
    if fact.keys is not None:
        assert set(body) == fact.keys, body
    if fact.error is not None:
        assert body["error"] == fact.error, body
