"""Console test helpers: JSON calls under the protocol's base path and a SEND_CODE recorder."""

from __future__ import annotations

import json
from typing import Any

BASE = "/.well-known/better"
#: In ``configure(KEY=REMOVE)`` (tests/console/conftest.py): drop KEY from BETTER_CONSOLE.
REMOVE = object()

# Codes the server "mailed", newest last (BETTER_CONSOLE["MAGIC_LINK"]["SEND_CODE"] is
# "tests.support.console.capture_code").
SENT: list[dict[str, Any]] = []


def capture_code(email: str, session_id: str, code: str, **context: Any) -> None:
    SENT.append({"email": email, "session_id": session_id, "code": code, **context})


def post(client: Any, path: str, body: Any = None, **extra: Any) -> Any:
    """POST a JSON body to ``BASE + path``."""
    data = "" if body is None else json.dumps(body)
    return client.post(BASE + path, data=data, content_type="application/json", **extra)


def get(client: Any, path: str, **extra: Any) -> Any:
    return client.get(BASE + path, **extra)
