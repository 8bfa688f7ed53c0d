"""Fixtures of the differential tests: the reference servers and our SEND_CODE recorder."""

from __future__ import annotations

from typing import Any

from tests.console.reference_server import reference_servers  # noqa: F401

# Codes our server "mailed", newest last (BETTER_CONSOLE['MAGIC_LINK']['SEND_CODE']).
SENT: list[dict[str, Any]] = []


def capture_code(email: str, session_id: str, code: str, **context: Any) -> None:
    SENT.append({"email": email, "session_id": session_id, "code": code, **context})
