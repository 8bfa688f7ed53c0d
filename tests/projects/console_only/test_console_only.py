"""better_console alone: no products, magic link codes need SEND_CODE, the checks pass."""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

import pytest
from django.apps import apps
from django.core import checks
from django.core.management import call_command

from better_console.models import ConsoleSession
from better_console.registry import products
from better_console.testing import auth_headers, session_token
from better_tenant.registry import exempt_paths

pytestmark = pytest.mark.django_db

BASE = "/.well-known/better"
MAGIC = {"ALLOWED_EMAILS": ["admin@example.com"]}
SENT: list[dict[str, Any]] = []


def capture_code(email: str, session_id: str, code: str, **context: Any) -> None:
    SENT.append({"email": email, "session_id": session_id, "code": code})


def post(client, path: str, body: dict) -> Any:
    return client.post(BASE + path, json.dumps(body), content_type="application/json")


def serious(messages: list[checks.CheckMessage]) -> list[str]:
    return [f"{m.id}: {m.msg}" for m in messages if m.is_serious()]


def test_only_better_console_of_the_apps_is_installed():
    names = ("tenant", "audit", "console", "webhooks", "mail")
    assert {name for name in names if apps.is_installed(f"better_{name}")} == {"console"}
    # The console declares its prefix for a tenant middleware that is not there to read it.
    assert exempt_paths() == ("/.well-known/better/",)


def test_no_product_is_registered_or_served(client):
    assert products() == []
    capabilities = client.get(f"{BASE}/console/capabilities")
    assert capabilities.status_code == 200 and capabilities.json()["products"] == []
    auth = auth_headers(session_token("admin"))
    for product in ("tenant", "audit", "webhooks", "mail"):
        assert client.get(f"{BASE}/{product}/logs", **auth).status_code == 404


def test_magic_link_without_better_mail_or_send_code_cannot_deliver(client, settings):
    settings.BETTER_CONSOLE = {
        **settings.BETTER_CONSOLE,
        "AUTO_APPROVE": False,
        "MAGIC_LINK": MAGIC,
    }
    problems = serious(checks.run_checks())
    assert len(problems) == 1 and "better_mail" in problems[0]
    response = post(client, "/console/session/init", {"email": "admin@example.com"})
    assert response.status_code == 503
    assert response.json()["code"] == "EMAIL_DELIVERY_UNAVAILABLE"


def test_magic_link_with_send_code_signs_in(client, settings):
    SENT.clear()
    sender = f"{__name__}.capture_code"
    settings.BETTER_CONSOLE = {
        **settings.BETTER_CONSOLE,
        "AUTO_APPROVE": False,
        "MAGIC_LINK": {**MAGIC, "SEND_CODE": sender},
    }
    assert serious(checks.run_checks()) == []
    session_id = post(client, "/console/session/init", {"email": "admin@example.com"}).json()[
        "sessionId"
    ]
    [sent] = SENT
    assert (sent["email"], sent["session_id"]) == ("admin@example.com", session_id)
    verified = post(
        client, "/console/session/verify", {"session_id": session_id, "code": sent["code"]}
    )
    assert verified.json() == {"status": "verified"}
    claimed = post(client, "/console/session/claim", {"session_id": session_id})
    assert claimed.status_code == 200 and claimed.json()["status"] == "claimed"
    [session] = ConsoleSession.objects.all()
    assert session.email == "admin@example.com"
    assert session.token_hash == hashlib.sha256(claimed.json()["sessionToken"].encode()).hexdigest()


def test_system_checks_and_the_check_command_pass():
    call_command("check", databases=["default"], stdout=io.StringIO())
    messages = checks.run_checks(databases=["default"])
    assert serious(messages) == []
    assert [m.id for m in messages if (m.id or "").startswith("better_tenant")] == []
    out = io.StringIO()
    call_command("better_console", "check", stdout=out, stderr=io.StringIO())
    assert out.getvalue().rstrip().endswith("checks passed.") and "✗" not in out.getvalue()
