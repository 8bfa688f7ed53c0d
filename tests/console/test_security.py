"""Adversarial probes of the console: tokens, the magic link, CORS, throttling, products, admin."""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import timedelta
from typing import Any

import jwt
import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from better_console import sessions
from better_console.conf import load
from better_console.magic_link import MAX_LINKS_PER_EMAIL
from better_console.models import ConsoleSession, MagicLink
from better_console.registry import Endpoint, get_product, register_product, unregister_product
from better_console.testing import auth_headers, session_token
from better_console.tokens import generate_token_pair, secret_from_hash
from better_tenant import run_as_system
from better_tenant.api import create_tenant
from better_tenant.models import Tenant
from tests.console.test_admin_console import staff
from tests.support.audit import add_rows
from tests.support.console import BASE, SENT, get, post

pytestmark = pytest.mark.django_db

CONSOLE = "https://console.usebetter.dev"
INVALID = {"error": "Invalid or expired session", "code": "INVALID_TOKEN"}
PRODUCTS = ("tenant", "audit", "webhooks", "mail")


@pytest.fixture(autouse=True)
def probe():
    def boom(request: Any) -> Any:
        raise RuntimeError("db password=hunter2 at /srv/app/settings.py")

    register_product(
        "probe",
        "Probe",
        [
            Endpoint("GET", "/me", lambda r: {"email": r.session.email}),
            Endpoint("GET", "/boom", boom),
            Endpoint("POST", "/echo", lambda r: {"body": r.body}),
        ],
    )
    yield
    unregister_product("probe")


@pytest.fixture
def secret(settings) -> str:
    return secret_from_hash(settings.BETTER_CONSOLE["TOKEN_HASH"])


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "sessionId": str(uuid.uuid4()),
        "email": "dev@localhost",
        "permissions": "admin",
        "expiresAt": now + 3600,
        "method": "auto_approve",
        "iat": now,
        "exp": now + 3600,
        "aud": sessions.AUDIENCE,
        "jti": uuid.uuid4().hex,
        **overrides,
    }


def bearer(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def me(client, token: str):
    return get(client, "/probe/me", **bearer(token))


# --- token confusion ------------------------------------------------------------------------------


def test_an_auto_approve_token_dies_when_sign_in_switches_to_magic_link(client, configure):
    token = post(client, "/console/session/init").json()["sessionToken"]
    assert me(client, token).status_code == 200
    configure(AUTO_APPROVE=False, MAGIC_LINK={"ALLOWED_EMAILS": "admin@example.com"})
    response = me(client, token)
    assert (response.status_code, response.json()) == (401, INVALID)


@pytest.mark.parametrize("how", ["revoked", "rotated", "expired", "deleted"])
def test_a_magic_link_token_of_an_ended_session_is_refused(client, configure, how):
    token = session_token("admin")
    assert me(client, token).status_code == 200
    stored = ConsoleSession.objects.filter(token_hash=sessions.token_digest(token))
    if how == "revoked":
        stored.update(expires_at=timezone.now())
    elif how == "rotated":
        configure(TOKEN_HASH=generate_token_pair()[1])
    elif how == "expired":
        stored.update(expires_at=timezone.now() - timedelta(days=1))
    else:
        stored.delete()
    assert me(client, token).json() == INVALID


def test_permissions_beyond_allowed_actions_grant_nothing(client, configure, secret):
    tenant = create_tenant("Victim")
    configure(ALLOWED_ACTIONS=["read"])
    _, issued = sessions.create_stored_session(
        load(), session_id=str(uuid.uuid4()), email="a@example.com", permissions=["admin", "root"]
    )
    forged = sessions.sign(claims(permissions="admin"), secret)
    for token in (issued.token, forged):
        assert get(client, "/tenant/tenants", **bearer(token)).status_code == 200
        response = client.delete(f"{BASE}/tenant/tenants/{tenant.id}", **bearer(token))
        assert response.status_code == 403
    with run_as_system():
        assert Tenant.objects.filter(pk=tenant.id).exists()


@pytest.mark.parametrize("level", ["superuser", "*", ["root", "admin"], None, 3])
def test_unknown_claimed_levels_are_not_a_level(client, secret, level):
    token = sessions.sign(claims(permissions=level), secret)
    response = send(client, "post", "/tenant/tenants", {"name": "X", "slug": "x"}, bearer(token))
    assert (response.status_code, response.json()) == (401, INVALID)


def test_only_the_hash_signs_never_the_raw_token_or_the_prefixed_hash(client, configure):
    raw, hashed = generate_token_pair()
    configure(TOKEN_HASH=hashed)
    assert me(client, sessions.sign(claims(), secret_from_hash(hashed))).status_code == 200
    for key in (raw, hashed, hashed.upper()):
        assert me(client, sessions.sign(claims(), key)).json() == INVALID


@pytest.mark.parametrize(
    "headers",
    [
        {"kid": "../../../dev/null"},
        {"kid": "' OR 1=1 --"},
        {"jku": "https://evil.example/jwks.json"},
        {"x5u": "https://evil.example/cert.pem"},
        {"jwk": {"kty": "oct", "k": "YXR0YWNrZXI"}},
    ],
)
def test_key_headers_never_choose_the_key(client, secret, headers):
    attacker = jwt.encode(claims(), "attacker-" * 8, algorithm="HS256", headers=headers)
    assert me(client, attacker).json() == INVALID
    # The same header on a token signed with the real secret changes nothing either way.
    signed = jwt.encode(claims(), secret, algorithm="HS256", headers=headers)
    assert me(client, signed).status_code == 200


@pytest.mark.parametrize("where", ["header", "payload"])
def test_a_huge_token_is_a_plain_401(client, secret, where):
    padding = "x" * 200_000
    if where == "header":
        token = jwt.encode(claims(), secret, algorithm="HS256", headers={"pad": padding})
    else:
        token = jwt.encode(claims(pad=padding), secret, algorithm="HS256")
    response = me(client, token)
    assert (response.status_code, response.json()) == (401, INVALID)


# --- magic link -----------------------------------------------------------------------------------


def init(client, email: str = "admin@example.com", **extra: Any):
    return post(client, "/console/session/init", {"email": email}, **extra)


def verify(client, session_id: str, code: str):
    return post(client, "/console/session/verify", {"session_id": session_id, "code": code})


def claim(client, session_id: str, **extra: Any):
    return post(client, "/console/session/claim", {"session_id": session_id}, **extra)


def test_guessing_across_many_links_is_capped_per_email(client, configure, magic_only):
    configure(
        THROTTLE=None,
        AUTO_APPROVE=False,
        MAGIC_LINK={
            "ALLOWED_EMAILS": ["admin@example.com", "*@ops.example.com"],
            "SEND_CODE": "tests.support.console.capture_code",
        },
    )
    statuses = [
        init(
            client, "Admin@Example.com" if n % 2 else "admin@example.com", REMOTE_ADDR=f"10.0.{n}.1"
        ).status_code
        for n in range(MAX_LINKS_PER_EMAIL + 3)
    ]
    assert statuses == [200] * MAX_LINKS_PER_EMAIL + [429] * 3
    refused = init(client, REMOTE_ADDR="10.9.9.9")
    assert refused.json()["code"] == "RATE_LIMITED"
    assert 1 <= int(refused["Retry-After"]) <= 600
    assert MagicLink.objects.count() == MAX_LINKS_PER_EMAIL
    assert len(SENT) == MAX_LINKS_PER_EMAIL
    # Another address is not held up, and the cap lifts as the links expire.
    assert init(client, "bob@ops.example.com").status_code == 200
    MagicLink.objects.update(expires_at=timezone.now())
    assert init(client).status_code == 200


def test_links_verified_by_their_owner_do_not_count_towards_the_cap(client, configure, magic_only):
    configure(
        THROTTLE=None,
        AUTO_APPROVE=False,
        MAGIC_LINK={
            "ALLOWED_EMAILS": ["admin@example.com"],
            "SEND_CODE": "tests.support.console.capture_code",
        },
    )
    # An owner who signs in often is never held up: a verified link cannot be guessed at.
    for _ in range(MAX_LINKS_PER_EMAIL + 2):
        session_id = init(client).json()["sessionId"]
        assert verify(client, session_id, SENT[-1]["code"]).status_code == 200
        assert claim(client, session_id).json()["status"] == "claimed"
    # Links left waiting for their code still count.
    for _ in range(MAX_LINKS_PER_EMAIL):
        assert init(client).status_code == 200
    assert init(client).status_code == 429


def test_a_used_code_mints_no_second_session(client, magic_only):
    session_id = init(client).json()["sessionId"]
    code = SENT[-1]["code"]
    assert verify(client, session_id, code).status_code == 200
    token = claim(client, session_id).json()["sessionToken"]
    other = init(client).json()["sessionId"]
    assert verify(client, other, code).status_code == 401
    assert claim(client, other).status_code == 409
    assert verify(client, session_id, code).status_code == 410
    # Claimed again from another client: no token at all, never a second session.
    again = claim(client, session_id, REMOTE_ADDR="203.0.113.50")
    assert again.json() == {"status": "already_claimed"}
    assert token and ConsoleSession.objects.count() == 1


def test_expiry_beats_a_correct_code_and_a_verified_link(client, magic_only):
    first = init(client).json()["sessionId"]
    first_code = SENT[-1]["code"]
    second = init(client).json()["sessionId"]
    assert verify(client, second, SENT[-1]["code"]).status_code == 200
    # Past the minute of grace a verified link is no longer claimable either.
    MagicLink.objects.update(expires_at=timezone.now() - timedelta(seconds=61))
    assert verify(client, first, first_code).status_code == 410
    assert claim(client, second).status_code == 410
    assert claim(client, first).status_code == 409
    assert not ConsoleSession.objects.exists()


def test_unknown_session_ids_are_uniform_404s(client, magic_only):
    init(client)
    for session_id in (str(uuid.uuid4()), str(uuid.uuid4()).upper()):
        responses = [
            verify(client, session_id, "ABCDEF"),
            claim(client, session_id),
            client.get(f"{BASE}/console/session/poll", {"session_id": session_id}),
        ]
        assert {r.status_code for r in responses} == {404}
        assert {r.json()["error"] for r in responses} == {"Magic link not found"}


@pytest.mark.parametrize(
    "session_id",
    ["sess_" + "A" * 32, "sess_", "../../etc/passwd", "' OR 1=1 --", "sess_%", "sess_\u00e9"],
)
def test_session_ids_that_are_not_uuids_are_uniform_400s(client, magic_only, session_id):
    init(client)
    responses = [
        verify(client, session_id, "ABCDEF"),
        claim(client, session_id),
        client.get(f"{BASE}/console/session/poll", {"session_id": session_id}),
    ]
    assert {r.status_code for r in responses} == {400}
    assert {r.json()["error"] for r in responses} == {"Invalid session_id format"}


def test_control_characters_in_a_session_id_are_a_400_not_a_crash(client, magic_only):
    for response in (
        verify(client, "sess_\x00abc", "ABCDEF"),
        claim(client, "sess_\x00abc"),
        client.get(f"{BASE}/console/session/poll", {"session_id": "sess_\x00abc"}),
    ):
        assert response.status_code == 400
        assert response.json()["code"] in ("INVALID_BODY", "INVALID_REQUEST", "INVALID_JSON")


@pytest.mark.parametrize(
    ("email", "allowed"),
    [
        ("ADMIN@EXAMPLE.COM", True),
        ("admin@example.com.", False),
        ("admin+tag@example.com", False),
        ("admin@example.com ", True),
        ("\u0430dmin@example.com", False),  # Cyrillic a
        ("\u212aate@example.com", False),  # Kelvin sign, lowercases to an ASCII k
        ('"evil@attacker.example"@ops.example.com', False),
        ('"a,evil@attacker.example"@ops.example.com', False),
        ("admin@example.com\r\nBcc: evil@attacker.example", False),
        ("admin@example.com,evil@attacker.example", False),
        ("Admin <admin@example.com>", False),
    ],
)
def test_the_allow_list_cannot_be_stretched(client, configure, magic_only, email, allowed):
    configure(
        AUTO_APPROVE=False,
        MAGIC_LINK={
            "ALLOWED_EMAILS": ["admin@example.com", "kate@example.com", "*@ops.example.com"],
            "SEND_CODE": "tests.support.console.capture_code",
        },
    )
    response = init(client, email)
    assert (response.status_code == 200) is allowed, response.content
    if not allowed:
        assert response.status_code in (400, 403)
        assert SENT == []


def test_glob_metacharacters_in_patterns_are_literal(client, configure, magic_only):
    configure(
        AUTO_APPROVE=False,
        MAGIC_LINK={
            "ALLOWED_EMAILS": "adm?n@example.com,[ab]ob@example.com,a.c@example.com",
            "SEND_CODE": "tests.support.console.capture_code",
        },
    )
    for email in ("admin@example.com", "bob@example.com", "abc@example.com"):
        assert init(client, email).status_code == 400
    assert init(client, "adm?n@example.com").status_code == 200


@pytest.mark.parametrize(
    "base_url",
    [
        "https://console.usebetter.dev/x\r\nBcc: evil@attacker.example",
        "https://console.usebetter.dev/\n\nYour account is locked: call +1 555 0100",
        "https://console.usebetter.dev/ see https://phish.example.net",
        "https://console.usebetter.dev\\@phish.example.net/",
        "https://console.usebetter.dev@phish.example.net/",
        "javascript://console.usebetter.dev/%0aalert(1)",
    ],
)
def test_base_url_cannot_inject_into_the_mail(client, magic_only, base_url):
    response = post(
        client, "/console/session/init", {"email": "admin@example.com", "baseUrl": base_url}
    )
    assert response.status_code == 200
    assert SENT[-1]["console_url"] is None


def test_app_name_reaches_send_code_as_one_plain_line(client, magic_only):
    app_name = "Acme\r\nBcc: evil@attacker.example\x1b[31m\u2028" + "x" * 5000
    post(client, "/console/session/init", {"email": "admin@example.com", "appName": app_name})
    sent = SENT[-1]["app_name"]
    assert sent.isprintable() and "Bcc: evil" in sent
    assert sent.startswith("Acme") and len(sent) <= 200


def test_the_mailed_code_goes_to_the_one_address_only(
    client, configure, settings, django_capture_on_commit_callbacks
):
    settings.BETTER_MAIL = {"ASYNC": False}
    mail.outbox = []
    configure(AUTO_APPROVE=False, MAGIC_LINK={"ALLOWED_EMAILS": "*@example.com"})
    with django_capture_on_commit_callbacks(execute=True):
        response = post(
            client,
            "/console/session/init",
            {
                "email": "admin@example.com",
                "appName": "X\r\nBcc: evil@attacker.example",
                "baseUrl": "https://console.usebetter.dev/\r\nBcc: evil@attacker.example",
            },
        )
    assert response.status_code == 200
    [message] = mail.outbox
    assert message.recipients() == ["admin@example.com"]
    assert "attacker" not in message.message().as_string()


# --- the code must not leak to whoever reads the mail log --------------------------------------


def test_a_read_session_cannot_lift_a_sign_in_code_from_the_mail_log(
    client, configure, settings, django_capture_on_commit_callbacks
):
    settings.BETTER_MAIL = {"ASYNC": False, "STORE_BODIES": True}
    reader = auth_headers(session_token("read"))
    configure(AUTO_APPROVE=False, MAGIC_LINK={"ALLOWED_EMAILS": "admin@example.com"})
    mail.outbox = []
    with django_capture_on_commit_callbacks(execute=True):
        session_id = init(client).json()["sessionId"]
    code = re.search(r"^([A-Z0-9]{6})$", mail.outbox[0].body, re.MULTILINE).group(1)
    listing = get(client, "/mail/logs", **reader)
    assert listing.status_code == 200
    [entry] = listing.json()["entries"]
    detail = get(client, f"/mail/logs/{entry['id']}", **reader)
    assert detail.status_code == 200
    for response in (listing, detail):
        assert code not in response.content.decode()
    # The redaction hides the code only: the mail is still there to be seen.
    assert entry["template"] == "console_magic_link" and entry["to"] == ["admin@example.com"]
    assert verify(client, session_id, code).status_code == 200


# --- CORS -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "origin",
    [
        "null",
        "https://console.usebetter.dev.evil.com",
        "https://evilconsole.usebetter.dev",
        "https://evil.com/https://console.usebetter.dev",
        "http://console.usebetter.dev",
        "https://console.usebetter.dev:8443",
        "https://console.usebetter.dev@evil.com",
        "https://console.usebetter.dev%2f.evil.com",
        "https://console.usebetter.dev, https://evil.com",
        "*",
    ],
)
def test_lookalike_origins_get_no_cors(client, origin):
    for response in (
        get(client, "/console/capabilities", HTTP_ORIGIN=origin),
        client.options(
            f"{BASE}/tenant/tenants",
            HTTP_ORIGIN=origin,
            HTTP_ACCESS_CONTROL_REQUEST_METHOD="DELETE",
        ),
    ):
        assert not [h for h in response.headers if h.lower().startswith("access-control")]


def test_cors_never_allows_credentials(client):
    simple = get(client, "/console/capabilities", HTTP_ORIGIN=CONSOLE)
    preflight = client.options(
        f"{BASE}/tenant/tenants", HTTP_ORIGIN=CONSOLE, HTTP_ACCESS_CONTROL_REQUEST_METHOD="DELETE"
    )
    for response in (simple, preflight):
        assert response["Access-Control-Allow-Origin"] == CONSOLE
        assert "Access-Control-Allow-Credentials" not in response
        assert response["Access-Control-Allow-Origin"] != "*"


def test_a_preflight_grants_no_access_by_itself(client):
    preflight = client.options(
        f"{BASE}/tenant/tenants/{uuid.uuid4()}",
        HTTP_ORIGIN=CONSOLE,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="DELETE",
    )
    assert preflight.status_code == 204 and preflight.content == b""
    response = client.delete(f"{BASE}/tenant/tenants/{uuid.uuid4()}", HTTP_ORIGIN=CONSOLE)
    assert response.status_code == 401


# --- throttling -----------------------------------------------------------------------------------


def init_status(client, **extra: Any) -> int:
    return post(client, "/console/session/init", **extra).status_code


def test_forwarded_for_is_ignored_without_proxies(client, configure):
    configure(MAGIC_LINK=None, THROTTLE="2/min", NUM_PROXIES=0)
    statuses = [init_status(client, HTTP_X_FORWARDED_FOR=f"198.51.100.{n}") for n in range(3)]
    assert statuses == [200, 200, 429]


def test_client_supplied_forwarded_entries_are_ignored_behind_a_proxy(client, configure):
    configure(MAGIC_LINK=None, THROTTLE="2/min", NUM_PROXIES=1)
    statuses = [
        init_status(client, HTTP_X_FORWARDED_FOR=f"198.51.100.{n}, 203.0.113.7") for n in range(3)
    ]
    assert statuses == [200, 200, 429]


def test_a_garbage_forwarded_entry_is_counted_not_a_crash(client, configure):
    configure(MAGIC_LINK=None, THROTTLE="2/min", NUM_PROXIES=1)
    statuses = [
        init_status(client, HTTP_X_FORWARDED_FOR=f"not an address {n}\x7f") for n in range(3)
    ]
    assert statuses == [200, 200, 429]


def test_ipv6_clients_are_counted_per_64_network(client, configure):
    configure(MAGIC_LINK=None, THROTTLE="2/min")
    statuses = [init_status(client, REMOTE_ADDR=f"2001:db8:1:2::{n:x}") for n in range(1, 4)]
    assert statuses == [200, 200, 429]
    assert init_status(client, REMOTE_ADDR="2001:db8:1:3::1") == 200


def test_spellings_of_one_address_share_a_budget(client, configure):
    configure(MAGIC_LINK=None, THROTTLE="2/min")
    statuses = [
        init_status(client, REMOTE_ADDR="198.51.100.7"),
        init_status(client, REMOTE_ADDR="::ffff:198.51.100.7"),
        init_status(client, REMOTE_ADDR="::FFFF:c633:6407"),
    ]
    assert statuses == [200, 200, 429]


def test_poll_has_its_own_budget_and_cannot_verify(client, configure, magic_only):
    configure(
        AUTO_APPROVE=False,
        POLL_THROTTLE="2/min",
        MAGIC_LINK={
            "ALLOWED_EMAILS": "admin@example.com",
            "SEND_CODE": "tests.support.console.capture_code",
        },
    )
    session_id = init(client).json()["sessionId"]
    path = f"{BASE}/console/session/poll"
    statuses = [
        client.get(path, {"session_id": session_id, "code": SENT[-1]["code"]}).status_code
        for _ in range(3)
    ]
    assert statuses == [200, 200, 429]
    assert MagicLink.objects.get().verified_at is None


# --- product routes -------------------------------------------------------------------------------


def send(client, method: str, path: str, body: Any, auth: dict[str, str], **extra: Any):
    return getattr(client, method)(
        BASE + path, data=json.dumps(body), content_type="application/json", **auth, **extra
    )


def guarded_endpoints(level: str) -> list[tuple[str, str, str]]:
    found = []
    for product_id in PRODUCTS:
        for endpoint in get_product(product_id).endpoints:
            if endpoint.required_permission == level:
                path = "/".join(
                    str(uuid.uuid4()) if s.startswith(":") else s for s in endpoint.segments
                )
                found.append((endpoint.method, f"/{product_id}/{path}", level))
    return found


@pytest.mark.parametrize(
    ("method", "path", "required"), guarded_endpoints("write") + guarded_endpoints("admin")
)
def test_a_lower_session_never_reaches_a_higher_handler(client, method, path, required):
    below = ["read"] if required == "write" else ["read", "write"]
    for levels in (["read"], below):
        auth = auth_headers(session_token(levels))
        response = send(client, method.lower(), path, {"name": "x"}, auth)
        assert (response.status_code, response.json()["error"]) == (403, "Insufficient permissions")


@pytest.mark.parametrize(
    "header", ["HTTP_X_HTTP_METHOD_OVERRIDE", "HTTP_X_HTTP_METHOD", "HTTP_X_METHOD_OVERRIDE"]
)
def test_method_override_headers_are_ignored(client, header):
    tenant = create_tenant("Keep me")
    reader = auth_headers(session_token("read"))
    url = f"{BASE}/tenant/tenants/{tenant.id}"
    assert client.get(url, **reader, **{header: "DELETE"}).status_code == 200
    assert client.post(url, **reader, **{header: "DELETE"}).status_code == 404
    assert client.post(f"{url}?_method=DELETE", **reader).status_code == 404
    with run_as_system():
        assert Tenant.objects.filter(pk=tenant.id).exists()


@pytest.mark.parametrize(
    "path",
    [
        "/tenant/tenants/..%2F..%2Fconsole%2Fhealth",
        "/tenant/tenants/%2e%2e",
        "/tenant/tenants/{id}%2Fx",
        "/tenant/tenants/{id}/..",
        "/tenant/../console/health",
        "/tenant/tenants/{id}%00",
    ],
)
def test_traversal_in_path_params_reaches_nothing(client, path):
    tenant = create_tenant("Acme")
    auth = auth_headers(session_token("admin"))
    response = client.get(BASE + path.format(id=tenant.id), **auth)
    assert response.status_code in (400, 404, 405)
    assert response.json()["code"] in ("INVALID_ID", "NOT_FOUND", "METHOD_NOT_ALLOWED")


LIST_ROUTES = [
    "/tenant/tenants",
    "/audit/logs",
    "/audit/stats",
    "/audit/export",
    "/webhooks/endpoints",
    "/webhooks/deliveries",
    "/mail/logs",
    "/mail/stats",
]


@pytest.mark.parametrize("path", [p for p in LIST_ROUTES if p != "/tenant/tenants"])
@pytest.mark.parametrize(
    "tenant_id", ["' OR 1=1 --", "00000000-0000-0000-0000-000000000000' OR '1'='1", "null"]
)
def test_tenant_id_must_be_a_uuid(client, path, tenant_id):
    auth = auth_headers(session_token("read"))
    response = client.get(BASE + path, {"tenantId": tenant_id}, **auth)
    assert (response.status_code, response.json()["code"]) == (400, "INVALID_ID")


@pytest.mark.parametrize(
    "path", ["/tenant/tenants", "/audit/logs", "/webhooks/endpoints", "/mail/logs"]
)
@pytest.mark.parametrize(
    ("limit", "allowed"),
    [
        # Read as the published servers read it: any number of at least 1, above 1000 capped.
        ("100000", True),
        ("1e3", True),
        ("201", True),
        ("-1", False),
        ("0", False),
        ("NaN", False),
        ("Infinity", False),
        ("50; DROP TABLE tenants", False),
    ],
)
def test_limits_are_bounded(client, path, limit, allowed):
    auth = auth_headers(session_token("read"))
    response = client.get(BASE + path, {"limit": limit}, **auth)
    if allowed:
        assert response.status_code == 200
        body = response.json()
        assert (body if path == "/tenant/tenants" else body["entries"]) == []
    else:
        assert (response.status_code, response.json()) == (
            400,
            {
                "error": "Invalid 'limit': must be a positive integer (max 1000)",
                "code": "INVALID_LIMIT",
            },
        )
    with run_as_system():
        assert not Tenant.objects.exists()


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/tenant/tenants", {"search": "' OR 1=1; DROP TABLE tenants; --"}),
        ("/tenant/tenants", {"search": "%_\\"}),
        ("/audit/logs", {"search": "') OR true --"}),
        ("/audit/logs", {"tableName": "tenants; DROP TABLE audit_logs"}),
        ("/audit/logs", {"actorId": "1' OR '1'='1"}),
        (
            "/audit/logs",
            {
                "tableName": "tenants",
                "recordId": "x') UNION SELECT * FROM better_console_sessions --",
            },
        ),
        ("/mail/logs", {"to": "x' OR '1'='1"}),
        ("/mail/logs", {"template": "' OR 1=1 --"}),
        ("/webhooks/deliveries", {"eventType": "' OR 1=1 --"}),
    ],
)
def test_filters_are_values_not_sql(client, path, query):
    from better_audit.models import AuditLog

    create_tenant("Acme")
    with run_as_system():
        # An entry for an injected "OR true" to leak.
        add_rows(
            AuditLog(
                table_name="tenants",
                operation="INSERT",
                record_id="1",
                actor_id="ops",
                label="Acme",
            )
        )
    auth = auth_headers(session_token("read"))
    response = client.get(BASE + path, query, **auth)
    assert response.status_code == 200
    body = response.json()
    assert (body if path == "/tenant/tenants" else body["entries"]) == []
    with run_as_system():
        assert Tenant.objects.count() == 1
        assert AuditLog.objects.count() == 1


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/audit/logs", {"order": "asc; DROP TABLE audit_logs"}),
        ("/audit/logs", {"order": "timestamp"}),
        ("/audit/export", {"format": "sql"}),
        ("/mail/logs", {"status": "sent' OR '1'='1"}),
        ("/webhooks/endpoints", {"status": "active' --"}),
        ("/audit/logs", {"cursor": "eyJ4Ijp9"}),
        ("/audit/logs", {"cursor": "eyJ4Ijp9", "direction": "before"}),
        ("/audit/logs", {"direction": "before; DROP TABLE audit_logs"}),
        ("/audit/export", {"format": "ndjson"}),
        ("/audit/stats", {"since": "7d"}),
        ("/audit/stats", {"until": "now() --"}),
    ],
)
def test_choices_and_cursors_are_closed_sets(client, path, query):
    auth = auth_headers(session_token("read"))
    response = client.get(BASE + path, query, **auth)
    assert response.status_code == 400
    assert response.json()["code"] in ("INVALID_FILTER", "INVALID_CURSOR")


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/tenant/tenants", "search"),
        ("/audit/logs", "search"),
        ("/audit/logs", "actorId"),
        ("/audit/logs", "around"),
        ("/audit/logs", "cursor"),
        ("/audit/export", "tableName"),
        ("/audit/stats", "since"),
        ("/mail/logs", "to"),
        ("/webhooks/deliveries", "eventType"),
    ],
)
def test_a_nul_byte_in_a_filter_is_a_400_not_a_500(client, path, name):
    auth = auth_headers(session_token("read"))
    response = client.get(BASE + path, {name: "abc\x00def"}, **auth)
    assert (response.status_code, response.json()["code"]) == (400, "INVALID_FILTER")


def test_an_export_filename_cannot_inject_headers(client):
    auth = auth_headers(session_token("read"))
    response = client.get(
        f"{BASE}/audit/export",
        {"filename": 'x"\r\nSet-Cookie: session=evil; filename="../../etc/passwd'},
        **auth,
    )
    assert response.status_code == 200
    assert "Set-Cookie" not in response
    disposition = response["Content-Disposition"]
    assert "\r" not in disposition and "\n" not in disposition and "/" not in disposition
    assert disposition.count('"') == 2


def test_a_failing_handler_leaks_nothing_in_production(client, production):
    response = get(client, "/probe/boom", **auth_headers(session_token("read")))
    assert response.status_code == 500
    assert response.json() == {"error": "Internal server error", "code": "INTERNAL_ERROR"}
    assert b"hunter2" not in response.content and b"/srv" not in response.content


@pytest.mark.parametrize("path", ["/console/session/init", "/probe/echo"])
def test_a_deeply_nested_body_is_a_400_not_a_crash(client, path):
    body = "[" * 100_000 + "]" * 100_000
    response = client.post(
        BASE + path,
        data=body,
        content_type="application/json",
        **auth_headers(session_token("read")),
    )
    assert (response.status_code, response.json()["code"]) == (400, "INVALID_JSON")


# --- the Django admin -----------------------------------------------------------------------------


def test_staff_without_console_levels_see_no_dashboard(client, django_user_model):
    dashboard = reverse("admin:better_console_dashboard")
    client.force_login(staff(django_user_model, "plain"))
    assert client.get(dashboard).status_code == 403
    client.force_login(django_user_model.objects.create_user("outsider", password="pw"))
    assert client.get(dashboard).status_code == 302


def test_revoke_needs_a_csrf_token(django_user_model):
    boss = staff(django_user_model, "boss", "console_admin")
    sessions.create_stored_session(load(), session_id="sess_live", email="a@x.io")
    client = Client(enforce_csrf_checks=True)
    client.force_login(boss)
    row = ConsoleSession.objects.get()
    response = client.post(
        reverse("admin:better_console_consolesession_changelist"),
        {"action": "revoke_sessions", "_selected_action": [str(row.pk)]},
    )
    assert response.status_code == 403
    assert not ConsoleSession.objects.get().is_expired


def test_a_console_reader_in_the_admin_cannot_lift_a_claimable_session_id(
    client, django_user_model, magic_only
):
    session_id = init(Client()).json()["sessionId"]
    assert verify(Client(), session_id, SENT[-1]["code"]).status_code == 200
    client.force_login(staff(django_user_model, "reader", "console_read"))
    pages = [
        reverse("admin:better_console_magiclink_changelist"),
        reverse("admin:better_console_magiclink_change", args=[MagicLink.objects.get().pk]),
    ]
    token = claim(Client(), session_id).json()["sessionToken"]
    row = ConsoleSession.objects.get()
    pages += [
        reverse("admin:better_console_consolesession_changelist"),
        reverse("admin:better_console_consolesession_change", args=[row.pk]),
    ]
    for page in pages:
        response = client.get(page)
        assert response.status_code == 200
        assert session_id not in response.content.decode()
    assert me(Client(), token).status_code == 200
    # An exact search by the full id still finds the row.
    found = client.get(pages[0], {"q": session_id})
    assert "admin@example.com" in found.content.decode()
