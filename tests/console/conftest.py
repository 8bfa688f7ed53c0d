"""Fixtures of the console tests: settings overrides, a production environment, JSON calls."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from better_console import environment
from better_console.testing import console_auth  # noqa: F401

BASE = "/.well-known/better"
REMOVE = object()


@pytest.fixture
def configure(settings) -> Callable[..., dict[str, Any]]:
    """``configure(KEY=value, OTHER=REMOVE)``: BETTER_CONSOLE = the test settings changed so."""
    base = dict(settings.BETTER_CONSOLE)

    def apply(**overrides: Any) -> dict[str, Any]:
        merged = {**base, **overrides}
        merged = {key: value for key, value in merged.items() if value is not REMOVE}
        settings.BETTER_CONSOLE = merged
        return merged

    return apply


@pytest.fixture
def production(settings, monkeypatch) -> None:
    """Neither development (DEBUG off) nor a test run, as a deployed server sees it."""
    settings.DEBUG = False
    monkeypatch.setattr(environment, "is_test_run", lambda: False)
    assert environment.environment() == "production"


@pytest.fixture
def magic_only(configure) -> None:
    """Magic link sign-in only; codes are captured by tests.console.conftest.capture_code."""
    SENT.clear()
    configure(
        AUTO_APPROVE=False,
        MAGIC_LINK={
            "ALLOWED_EMAILS": ["admin@example.com", "*@ops.example.com"],
            "SEND_CODE": "tests.console.conftest.capture_code",
        },
    )


SENT: list[dict[str, Any]] = []


def capture_code(email: str, session_id: str, code: str, **context: Any) -> None:
    SENT.append({"email": email, "session_id": session_id, "code": code, **context})


def post(client, path: str, body: Any = None, **extra: Any):
    """POST a JSON body to ``BASE + path``."""
    data = "" if body is None else json.dumps(body)
    return client.post(BASE + path, data=data, content_type="application/json", **extra)


def get(client, path: str, **extra: Any):
    return client.get(BASE + path, **extra)
