"""The magic link handshake: init, verify, poll, claim; lockout, expiry, allow-list, delivery."""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import timedelta

import pytest
from django.apps import apps
from django.core import mail
from django.utils import timezone

from better_console.magic_link import CODE_ALPHABET, CODE_FORMAT, generate_code
from better_console.models import ConsoleSession, MagicLink
from better_console.registry import Endpoint, register_product, unregister_product
from better_console.sessions import token_digest
from tests.support.console import SENT, get, post

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _magic(magic_only):
    register_product(
        "probe", "Probe", [Endpoint("GET", "/me", lambda r: {"email": r.session.email})]
    )
    yield
    unregister_product("probe")


def init(client, email="admin@example.com", **body):
    response = post(client, "/console/session/init", {"email": email, **body})
    assert response.status_code == 200, response.content
    return response.json()["sessionId"], SENT[-1]["code"]


def verify(client, session_id, code):
    return post(client, "/console/session/verify", {"session_id": session_id, "code": code})


def poll(client, session_id):
    return get(client, f"/console/session/poll?session_id={session_id}")


def claim(client, session_id):
    return post(client, "/console/session/claim", {"session_id": session_id})


def wrong(code: str) -> str:
    return "".join(CODE_ALPHABET[(CODE_ALPHABET.index(c) + 1) % len(CODE_ALPHABET)] for c in code)


def test_three_step_handshake(client):
    response = post(client, "/console/session/init", {"email": "admin@example.com"})
    assert response.status_code == 200
    assert set(response.json()) == {"method", "sessionId"}
    assert response.json()["method"] == "magic_link"
    session_id = response.json()["sessionId"]
    assert str(uuid.UUID(session_id)) == session_id
    [sent] = SENT
    assert sent["email"] == "admin@example.com" and sent["session_id"] == session_id
    assert poll(client, session_id).json() == {"status": "pending"}

    response = verify(client, session_id, sent["code"])
    assert response.status_code == 200
    assert response.json() == {"status": "verified"}
    assert poll(client, session_id).json() == {"status": "verified"}

    response = claim(client, session_id)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"status", "sessionToken", "expiresIn"}
    assert body["status"] == "claimed"
    assert 86390 <= body["expiresIn"] <= 86400
    # A claimed link still polls as verified, as the published servers answer.
    assert poll(client, session_id).json() == {"status": "verified"}

    [session] = ConsoleSession.objects.all()
    assert session.session_id == session_id and session.email == "admin@example.com"
    assert session.token_hash == hashlib.sha256(body["sessionToken"].encode()).hexdigest()
    assert session.permissions == ["read", "write", "admin"]
    link = MagicLink.objects.get(session_id=session_id)
    assert link.token_hash == session.token_hash and link.claimed_at is not None

    me = get(client, "/probe/me", HTTP_AUTHORIZATION=f"Bearer {body['sessionToken']}")
    assert me.status_code == 200 and me.json() == {"email": "admin@example.com"}


def test_the_code_is_stored_only_as_its_hash(client):
    session_id, code = init(client)
    link = MagicLink.objects.get(session_id=session_id)
    assert link.code_hash == hashlib.sha256(code.encode()).hexdigest()
    assert code not in link.code_hash
    assert link.expires_at - link.created_at == timedelta(minutes=10)


def test_codes_use_an_alphabet_without_look_alikes():
    codes = {generate_code() for _ in range(300)}
    assert all(CODE_FORMAT.match(code) for code in codes)
    used = set("".join(codes))
    assert used <= set(CODE_ALPHABET)
    assert not used & set("0O1I")
    assert len(codes) > 290


@pytest.mark.parametrize(
    "mangle", [str.lower, lambda c: f" {c}", lambda c: c[:5], lambda c: c + "A"]
)
def test_a_code_outside_the_format_is_400_and_costs_no_attempt(client, mangle):
    session_id, code = init(client)
    response = verify(client, session_id, mangle(code))
    assert response.status_code == 400
    assert response.json()["error"] == "Invalid code format"
    assert MagicLink.objects.get(session_id=session_id).failed_attempts == 0
    assert verify(client, session_id, code).json() == {"status": "verified"}


def test_a_wrong_code_reports_the_remaining_attempts(client):
    session_id, code = init(client)
    response = verify(client, session_id, wrong(code))
    assert response.status_code == 401
    body = response.json()
    assert body["error"] == "Invalid code"
    assert body["remainingAttempts"] == 4
    assert verify(client, session_id, wrong(code)).json()["remainingAttempts"] == 3
    # The right code still works while attempts remain.
    assert verify(client, session_id, code).status_code == 200


def test_brute_force_locks_the_link(client):
    session_id, code = init(client)
    remaining = [
        verify(client, session_id, wrong(code)).json()["remainingAttempts"] for _ in "12345"
    ]
    assert remaining == [4, 3, 2, 1, 0]

    response = verify(client, session_id, code)
    assert response.status_code == 429
    assert response.json()["error"] == "Too many failed attempts"
    # Never verified: it polls as pending until it expires, and cannot be claimed.
    assert poll(client, session_id).json() == {"status": "pending"}
    assert claim(client, session_id).status_code == 409
    assert not ConsoleSession.objects.exists()


def test_max_attempts_is_configurable(client, configure):
    configure(
        AUTO_APPROVE=False,
        MAGIC_LINK={
            "ALLOWED_EMAILS": "admin@example.com",
            "SEND_CODE": "tests.support.console.capture_code",
            "MAX_ATTEMPTS": 2,
        },
    )
    session_id, code = init(client)
    assert verify(client, session_id, wrong(code)).json()["remainingAttempts"] == 1
    assert verify(client, session_id, wrong(code)).json()["remainingAttempts"] == 0
    assert verify(client, session_id, code).status_code == 429


def test_an_expired_code_is_refused(client):
    session_id, code = init(client)
    MagicLink.objects.filter(session_id=session_id).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    response = verify(client, session_id, code)
    assert response.status_code == 410
    assert response.json()["error"] == "Magic link expired"
    assert response.json()["code"] == "MAGIC_LINK_EXPIRED"
    assert poll(client, session_id).json() == {"status": "expired"}
    assert claim(client, session_id).status_code == 409


def test_an_unknown_session_id_is_404(client):
    unknown = str(uuid.uuid4())
    assert verify(client, unknown, "ABCDEF").status_code == 404
    assert poll(client, unknown).status_code == 404
    response = claim(client, unknown)
    assert response.status_code == 404
    assert response.json()["error"] == "Magic link not found"


def test_verify_poll_and_claim_check_their_fields(client):
    unknown = str(uuid.uuid4())
    cases = [
        (
            post(client, "/console/session/verify", {"session_id": unknown}),
            "Missing code or session_id",
        ),
        (post(client, "/console/session/verify", {"code": "ABCDEF"}), "Missing code or session_id"),
        (verify(client, "sess_x", "ABCDEF"), "Invalid session_id format"),
        (post(client, "/console/session/claim", {}), "Missing session_id"),
        (claim(client, "not-a-uuid"), "Invalid session_id format"),
        (get(client, "/console/session/poll"), "Missing session_id"),
        (poll(client, "1234"), "Invalid session_id format"),
    ]
    for response, error in cases:
        assert response.status_code == 400
        assert response.json()["error"] == error
    # The camelCase spelling is not the protocol's: it is a missing field.
    response = post(client, "/console/session/claim", {"sessionId": unknown})
    assert response.json()["error"] == "Missing session_id"


def test_init_without_email_is_400(client):
    response = post(client, "/console/session/init", {})
    assert response.status_code == 400
    assert response.json()["code"] == "EMAIL_REQUIRED"


def test_claim_before_verification_is_refused(client):
    session_id, _ = init(client)
    response = claim(client, session_id)
    assert response.status_code == 409
    assert response.json()["error"] == "Magic link not yet verified"
    assert not ConsoleSession.objects.exists()


def test_the_claim_is_single_use(client):
    session_id, code = init(client)
    verify(client, session_id, code)
    first = claim(client, session_id).json()
    assert first["status"] == "claimed"
    second = claim(client, session_id)
    # Whoever reads the session id later (a log, a URL) gets nothing out of it.
    assert second.status_code == 200
    assert second.json() == {"status": "already_claimed"}
    assert ConsoleSession.objects.count() == 1
    me = get(client, "/probe/me", HTTP_AUTHORIZATION=f"Bearer {first['sessionToken']}")
    assert me.status_code == 200


def test_a_second_verify_is_refused_as_used(client):
    session_id, code = init(client)
    assert verify(client, session_id, code).status_code == 200
    response = verify(client, session_id, code)
    assert response.status_code == 410
    assert response.json()["error"] == "Magic link already used"


def test_a_verified_link_may_be_claimed_a_minute_past_its_expiry(client):
    session_id, code = init(client)
    verify(client, session_id, code)
    MagicLink.objects.filter(session_id=session_id).update(
        expires_at=timezone.now() - timedelta(seconds=30)
    )
    assert claim(client, session_id).json()["status"] == "claimed"


def test_a_claim_after_the_grace_minute_is_refused(client):
    session_id, code = init(client)
    verify(client, session_id, code)
    token = claim(client, session_id).json()["sessionToken"]
    MagicLink.objects.filter(session_id=session_id).update(
        expires_at=timezone.now() - timedelta(seconds=61)
    )
    response = claim(client, session_id)
    assert response.status_code == 410
    assert response.json()["error"] == "Magic link expired"
    # The session itself lives on for its own lifetime.
    assert get(client, "/probe/me", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200


def test_an_expired_or_revoked_session_is_refused(client):
    session_id, code = init(client)
    verify(client, session_id, code)
    token = claim(client, session_id).json()["sessionToken"]
    ConsoleSession.objects.filter(token_hash=token_digest(token)).update(expires_at=timezone.now())
    response = get(client, "/probe/me", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 401
    assert response.json() == {"error": "Invalid or expired session", "code": "INVALID_TOKEN"}


def test_a_deleted_session_is_refused(client):
    session_id, code = init(client)
    verify(client, session_id, code)
    token = claim(client, session_id).json()["sessionToken"]
    ConsoleSession.objects.all().delete()
    assert get(client, "/probe/me", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 401


def test_an_email_outside_the_allow_list_is_refused(client):
    response = post(client, "/console/session/init", {"email": "hacker@evil.com"})
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "EMAIL_NOT_ALLOWED"
    assert "hacker@evil.com" in body["error"]
    assert not MagicLink.objects.exists() and SENT == []


@pytest.mark.parametrize(
    ("email", "allowed"),
    [
        ("Admin@Example.COM", True),
        ("bob@ops.example.com", True),
        ("bob@OPS.example.com", True),
        ("bob@eng.ops.example.com", False),
        ("bob@example.com", False),
        ("admin@example.com.evil.com", False),
        ("bob@ops.example.community", False),
    ],
)
def test_the_allow_list_takes_addresses_and_globs(client, email, allowed):
    response = post(client, "/console/session/init", {"email": email})
    assert (response.status_code == 200) is allowed


def test_allowed_emails_come_from_the_environment(client, configure, monkeypatch):
    monkeypatch.setenv("BETTER_CONSOLE_ALLOWED_EMAILS", "ops@myapp.com, admin@myapp.com")
    configure(AUTO_APPROVE=False, MAGIC_LINK={"SEND_CODE": "tests.support.console.capture_code"})
    assert post(client, "/console/session/init", {"email": "admin@myapp.com"}).status_code == 200
    assert post(client, "/console/session/init", {"email": "x@myapp.com"}).status_code == 400


def wildcard(configure, **extra):
    configure(
        AUTO_APPROVE=False,
        MAGIC_LINK={
            "ALLOWED_EMAILS": "*",
            "SEND_CODE": "tests.support.console.capture_code",
            **extra,
        },
    )


def test_the_wildcard_is_refused_in_production(client, configure, production):
    wildcard(configure)
    response = post(client, "/console/session/init", {"email": "anyone@anywhere.io"})
    assert response.status_code == 500
    assert response.json()["code"] == "WILDCARD_EMAIL_IN_PRODUCTION"
    assert not MagicLink.objects.exists()


def test_the_wildcard_is_allowed_in_production_when_opted_in(client, configure, production):
    wildcard(configure, ALLOW_UNAUTHENTICATED_EMAILS=True)
    assert post(client, "/console/session/init", {"email": "anyone@anywhere.io"}).status_code == 200


def test_the_wildcard_is_allowed_in_tests(client, configure):
    wildcard(configure)
    assert post(client, "/console/session/init", {"email": "anyone@anywhere.io"}).status_code == 200


def test_the_code_is_mailed_through_better_mail(
    client, configure, settings, django_capture_on_commit_callbacks
):
    settings.BETTER_MAIL = {"ASYNC": False}
    mail.outbox = []
    configure(AUTO_APPROVE=False, MAGIC_LINK={"ALLOWED_EMAILS": "admin@example.com"})
    with django_capture_on_commit_callbacks(execute=True):
        response = post(
            client,
            "/console/session/init",
            {"email": "admin@example.com", "baseUrl": "https://console.usebetter.dev/connect"},
        )
    assert response.status_code == 200
    [message] = mail.outbox
    assert message.to == ["admin@example.com"]
    code = re.search(r"^([A-Z0-9]{6})$", message.body, re.MULTILINE).group(1)
    assert code not in message.subject
    assert "https://console.usebetter.dev/connect" in message.body
    session_id = response.json()["sessionId"]
    # The one-click link leads to this server's own verify page, never to the caller's baseUrl.
    link = f"http://testserver/.well-known/better/console/session/verify?session_id={session_id}"
    assert f"{link}&amp;code={code}" in message.alternatives[0][0]
    assert verify(client, session_id, code).json() == {"status": "verified"}


def test_the_mailed_link_only_points_at_allowed_origins(
    client, configure, settings, django_capture_on_commit_callbacks
):
    settings.BETTER_MAIL = {"ASYNC": False}
    mail.outbox = []
    configure(AUTO_APPROVE=False, MAGIC_LINK={"ALLOWED_EMAILS": "admin@example.com"})
    with django_capture_on_commit_callbacks(execute=True):
        post(
            client,
            "/console/session/init",
            {"email": "admin@example.com", "baseUrl": "https://phish.example.net/console"},
        )
    [message] = mail.outbox
    assert "phish.example.net" not in message.body
    assert "phish.example.net" not in message.alternatives[0][0]


def test_send_code_receives_the_context(client):
    init(client, appName="Acme", baseUrl="http://localhost:5173/x")
    [sent] = SENT
    assert sent["app_name"] == "Acme"
    assert sent["console_url"] == "http://localhost:5173/x"
    assert sent["verify_url"] == (
        "http://testserver/.well-known/better/console/session/verify"
        f"?session_id={sent['session_id']}&code={sent['code']}"
    )
    assert sent["request"] is not None and sent["expires_at"] > timezone.now()


def failing_sender(email, session_id, code, **context):
    raise ConnectionError("smtp down")


def test_a_failed_delivery_is_502_and_leaves_no_link(client, configure):
    configure(
        AUTO_APPROVE=False,
        MAGIC_LINK={
            "ALLOWED_EMAILS": "admin@example.com",
            "SEND_CODE": "tests.console.test_magic_link.failing_sender",
        },
    )
    response = post(client, "/console/session/init", {"email": "admin@example.com"})
    assert response.status_code == 502
    assert response.json()["code"] == "EMAIL_DELIVERY_FAILED"
    assert not MagicLink.objects.exists()


def test_no_delivery_is_a_clear_503(client, configure, monkeypatch):
    installed = apps.is_installed
    monkeypatch.setattr(
        apps, "is_installed", lambda name: name != "better_mail" and installed(name)
    )
    configure(AUTO_APPROVE=False, MAGIC_LINK={"ALLOWED_EMAILS": "admin@example.com"})
    response = post(client, "/console/session/init", {"email": "admin@example.com"})
    assert response.status_code == 503
    assert response.json()["code"] == "EMAIL_DELIVERY_UNAVAILABLE"
    assert not MagicLink.objects.exists()


def test_missing_tables_answer_adapter_required(client, monkeypatch):
    monkeypatch.setattr(MagicLink._meta, "db_table", "better_console_magic_links_absent")
    response = post(client, "/console/session/init", {"email": "admin@example.com"})
    assert response.status_code == 500
    assert response.json()["code"] == "ADAPTER_REQUIRED"


def test_auto_approve_wins_when_both_methods_are_on(client, configure):
    configure(AUTO_APPROVE=True)
    body = post(client, "/console/session/init", {"email": "admin@example.com"}).json()
    assert "sessionToken" in body and SENT == []


def open_link(client, session_id, code):
    return get(client, f"/console/session/verify?session_id={session_id}&code={code}")


def test_the_mailed_link_opens_a_page_that_verifies(client):
    session_id, code = init(client)
    response = open_link(client, session_id, code)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/html; charset=utf-8"
    assert response["Cache-Control"] == "no-store"
    assert b"Sign-in verified" in response.content
    # No inline style or script: the page passes a policy that allows only its stylesheet.
    policy = response["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "style-src 'self'" in policy
    assert b"<style" not in response.content and b"<script" not in response.content
    assert b"better_console/verification.css" in response.content
    assert poll(client, session_id).json() == {"status": "verified"}
    # Opening it again tells the link is used up, as a page too.
    again = open_link(client, session_id, code)
    assert again.status_code == 410
    assert b"Magic link already used" in again.content


def test_the_verify_page_counts_wrong_codes_and_escapes_what_it_is_sent(client):
    session_id, code = init(client)
    response = open_link(client, session_id, wrong(code))
    assert response.status_code == 401 and b"Invalid code" in response.content
    assert MagicLink.objects.get(session_id=session_id).failed_attempts == 1
    response = get(client, f"/console/session/verify?session_id=<script>&code={code}")
    assert response.status_code == 400
    assert b"<script>" not in response.content
    assert b"Invalid session_id format" in response.content


def test_the_verify_page_allows_its_stylesheet_where_static_files_are_served(client, settings):
    settings.STATIC_URL = "https://cdn.example.com/static/"
    session_id, code = init(client)
    response = open_link(client, session_id, code)
    assert response.status_code == 200
    assert "style-src https://cdn.example.com;" in response["Content-Security-Policy"]
    assert b"https://cdn.example.com/static/better_console/verification.css" in response.content
