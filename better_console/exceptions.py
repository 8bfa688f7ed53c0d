"""Errors of better_console: configuration errors at start-up and protocol errors as JSON."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured


class ConsoleConfigurationError(ImproperlyConfigured):
    """BETTER_CONSOLE or a registered product cannot be used as configured."""

    code = "CONFIGURATION"


class ConsoleError(Exception):
    """An error answered as JSON ``{"error": ..., "code"?: ..., **extra}`` with an HTTP status.

    Product handlers raise it (or a subclass) to answer with an error; the view renders it.
    """

    status = 400
    code: str | None = None

    def __init__(
        self,
        error: str,
        *,
        status: int | None = None,
        code: str | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(error)
        self.error = error
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.extra = extra

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.error}
        if self.code:
            body["code"] = self.code
        body.update(self.extra)
        return body


class ConsoleSettingsError(ConsoleConfigurationError):
    """A value of BETTER_CONSOLE that cannot be used; ``id`` is its system check id."""

    def __init__(
        self,
        message: str,
        *,
        id: str,
        hint: str = "",
        code: str = "INVALID_CONFIGURATION",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.id = id
        self.hint = hint
        self.code = code

    def __str__(self) -> str:
        return f"{self.message} {self.hint}".strip()


class ConsoleAutoApproveInProductionError(ConsoleSettingsError):
    """AUTO_APPROVE is on outside development and tests: the server refuses to start."""


class ConsoleWeakSecretError(ConsoleSettingsError):
    """The TOKEN_HASH secret is shorter than 32 characters outside development and tests."""


class ConsoleWildcardEmailError(ConsoleSettingsError):
    """MAGIC_LINK allows ``*`` outside development without ALLOW_UNAUTHENTICATED_EMAILS."""
