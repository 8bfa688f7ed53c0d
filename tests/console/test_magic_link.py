"""The magic link handshake: init, verify, poll, claim; lockout, expiry, allow-list, delivery."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta

import pytest
from django.apps import apps
from django.core import mail
from django.utils import timezone

from better_console.magic_link import CODE_ALPHABET, generate_code, hash_code
from better_console.models import ConsoleSession, MagicLink
from better_console.registry import Endpoint, register_product, unregister_product
from better_console.sessions import token_digest
from tests.console.conftest import SENT, get, post

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
    return post(client, "/console/session/verify", {"sessionId": session_id, "code": code})


def poll(client, session_id):
    return get(client, f"/console/session/poll?sessionId={session_id}")


def claim(client, session_id):
    return post(client, "/console/session/claim", {"sessionId": session_id})


def wrong(code: str) -> str:
    return "".join(CODE_ALPHABET[(CODE_ALPHABET.index(c) + 1) % len(CODE_ALPHABET)] for c in code)


def test_three_step_handshake(client):
    response = post(client, "/console/session/init", {"email": "admin@example.com"})
    assert response.status_code == 200
    assert set(response.json()) == {"sessionId"}
    session_id = response.json()["sessionId"]
    assert session_id.startswith("sess_")
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
    assert set(body) == {"sessionToken", "expiresIn"}
    assert 86390 <= body["expiresIn"] <= 86400
    assert poll(client, session_id).json() == {"status": "claimed"}

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
    assert all(len(code) == 6 for code in codes)
    used = set("".join(codes))
    assert used <= set(CODE_ALPHABET)
    assert not used & set("0O1IL")
    assert len(codes) > 290


def test_a_code_is_accepted_whatever_its_case(client):
    session_id, code = init(client)
    assert hash_code(f"  {code.lower()} ") == hash_code(code)
    assert verify(client, session_id, code.lower()).json() == {"status": "verified"}


def test_a_wrong_code_reports_the_remaining_attempts(client):
    session_id, code = init(client)
    response = verify(client, session_id, wrong(code))
    assert response.status_code == 401
    body = response.json()
    assert body["error"] == "ConsoleMagicLinkInvalidCodeError"
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
    assert response.json()["error"] == "ConsoleMagicLinkLockedError"
    assert poll(client, session_id).json() == {"status": "locked"}
    assert claim(client, session_id).status_code == 429
    assert not ConsoleSession.objects.exists()


def test_max_attempts_is_configurable(client, configure):
    configure(
        AUTO_APPROVE=False,
        MAGIC_LINK={
            "ALLOWED_EMAILS": "admin@example.com",
            "SEND_CODE": "tests.console.conftest.capture_code",
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
    assert response.json()["error"] == "ConsoleMagicLinkExpiredError"
    assert response.json()["code"] == "MAGIC_LINK_EXPIRED"
    assert poll(client, session_id).json() == {"status": "expired"}
    assert claim(client, session_id).status_code == 410


def test_an_unknown_session_id_is_404(client):
    assert verify(client, "sess_unknown", "ABCDEF").status_code == 404
    assert poll(client, "sess_unknown").status_code == 404
    response = claim(client, "sess_unknown")
    assert response.status_code == 404
    assert response.json()["code"] == "SESSION_NOT_FOUND"


def test_verify_and_claim_need_their_fields(client):
    assert post(client, "/console/session/verify", {"sessionId": "sess_x"}).status_code == 400
    assert post(client, "/console/session/claim", {}).status_code == 400
    response = get(client, "/console/session/poll")
    assert response.status_code == 400 and response.json()["code"] == "INVALID_REQUEST"


def test_init_without_email_is_400(client):
    response = post(client, "/console/session/init", {})
    assert response.status_code == 400
    assert response.json()["code"] == "EMAIL_REQUIRED"


def test_claim_before_verification_is_refused(client):
    session_id, _ = init(client)
    response = claim(client, session_id)
    assert response.status_code == 403
    assert response.json()["error"] == "ConsoleMagicLinkNotVerifiedError"
    assert not ConsoleSession.objects.exists()


def test_a_repeated_claim_returns_the_same_token_and_one_session(client):
    session_id, code = init(client)
    verify(client, session_id, code)
    first = claim(client, session_id).json()["sessionToken"]
    second = claim(client, session_id)
    assert second.status_code == 200
    assert second.json()["sessionToken"] == first
    assert ConsoleSession.objects.count() == 1
    me = get(client, "/probe/me", HTTP_AUTHORIZATION=f"Bearer {second.json()['sessionToken']}")
    assert me.status_code == 200


def test_a_repeated_claim_after_the_link_expired_is_refused(client):
    session_id, code = init(client)
    verify(client, session_id, code)
    token = claim(client, session_id).json()["sessionToken"]
    MagicLink.objects.filter(session_id=session_id).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert claim(client, session_id).status_code == 410
    # The session itself lives on for its own lifetime.
    assert get(client, "/probe/me", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200


def test_an_expired_or_revoked_session_is_refused(client):
    session_id, code = init(client)
    verify(client, session_id, code)
    token = claim(client, session_id).json()["sessionToken"]
    ConsoleSession.objects.filter(token_hash=token_digest(token)).update(expires_at=timezone.now())
    response = get(client, "/probe/me", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 401
    assert response.json() == {"error": "Invalid or expired session"}


def test_a_deleted_session_is_refused(client):
    session_id, code = init(client)
    verify(client, session_id, code)
    token = claim(client, session_id).json()["sessionToken"]
    ConsoleSession.objects.all().delete()
    assert get(client, "/probe/me", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 401


def test_an_email_outside_the_allow_list_is_refused(client):
    response = post(client, "/console/session/init", {"email": "hacker@evil.com"})
    assert response.status_code == 403
    body = response.json()
    assert body["error"] == "ConsoleEmailNotAllowedError"
    assert body["code"] == "EMAIL_NOT_ALLOWED"
    assert "hacker@evil.com" in body["message"]
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
    configure(AUTO_APPROVE=False, MAGIC_LINK={"SEND_CODE": "tests.console.conftest.capture_code"})
    assert post(client, "/console/session/init", {"email": "admin@myapp.com"}).status_code == 200
    assert post(client, "/console/session/init", {"email": "x@myapp.com"}).status_code == 403


def wildcard(configure, **extra):
    configure(
        AUTO_APPROVE=False,
        MAGIC_LINK={
            "ALLOWED_EMAILS": "*",
            "SEND_CODE": "tests.console.conftest.capture_code",
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
