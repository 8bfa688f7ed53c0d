"""Helpers for tests of the example SaaS: its settings over a test suite's, and API calls."""

from __future__ import annotations

import copy
import json
from typing import Any


def use_saas_settings(settings: Any) -> None:
    """Apply the example project's audit configuration; mails are sent in process after commit.

    ``settings`` is pytest-django's fixture (the change is undone after the test).
    """
    from example_project import settings as example

    settings.BETTER_AUDIT = copy.deepcopy(example.BETTER_AUDIT)
    settings.BETTER_MAIL = {"ASYNC": False}


class Api:
    """JSON calls through Django's test client, i.e. through the project's whole middleware."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def __call__(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        extra = dict(headers or {})
        if token is not None:
            extra["Authorization"] = f"Bearer {token}"
        return self.client.generic(
            method,
            path,
            json.dumps(body) if body is not None else "",
            content_type="application/json",
            headers=extra,
        )

    def token(self, email: str, password: str, tenant: str) -> str:
        response = self(
            "POST", "/api/auth/token", {"email": email, "password": password, "tenant": tenant}
        )
        assert response.status_code == 200, response.content
        return response.json()["access"]
