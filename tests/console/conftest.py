"""Fixtures of the console tests: settings overrides and a production environment."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from better_console import environment
from better_console.testing import console_auth  # noqa: F401
from tests.support.console import REMOVE, SENT


@pytest.fixture
def configure(settings: Any) -> Callable[..., dict[str, Any]]:
    """``configure(KEY=value, OTHER=REMOVE)``: BETTER_CONSOLE = the test settings changed so."""
    base = dict(settings.BETTER_CONSOLE)

    def apply(**overrides: Any) -> dict[str, Any]:
        merged = {**base, **overrides}
        merged = {key: value for key, value in merged.items() if value is not REMOVE}
        settings.BETTER_CONSOLE = merged
        return merged

    return apply


@pytest.fixture
def production(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither development (DEBUG off) nor a test run, as a deployed server sees it."""
    settings.DEBUG = False
    monkeypatch.setattr(environment, "is_test_run", lambda: False)
    assert environment.environment() == "production"


@pytest.fixture
def magic_only(configure: Callable[..., dict[str, Any]]) -> None:
    """Magic link sign-in only; codes are captured by tests.support.console.capture_code."""
    SENT.clear()
    configure(
        AUTO_APPROVE=False,
        MAGIC_LINK={
            "ALLOWED_EMAILS": ["admin@example.com", "*@ops.example.com"],
            "SEND_CODE": "tests.support.console.capture_code",
        },
    )
