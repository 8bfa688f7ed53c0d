"""What the seed refuses outside development and tests: auto-approve, a weak secret, any email.

Each rule returns a Problem (a check id, an HTTP code and advice) or None. The system checks
report them, the views answer with them, and ``refuse_unsafe_start()`` stops the server on them.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from better_console.conf import TOKEN_HASH_ENV, ConsoleConfig, load
from better_console.environment import relaxed_environment
from better_console.exceptions import (
    ConsoleAutoApproveInProductionError,
    ConsoleSettingsError,
    ConsoleWeakSecretError,
    ConsoleWildcardEmailError,
)
from better_console.tokens import MIN_SECRET_LENGTH

# Commands that must run even when the server would refuse to start: `check` reports the
# refusals as errors, `better_console` generates the token that fixes a weak secret.
_REPAIR_COMMANDS = ("check", "better_console")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with BETTER_CONSOLE, as a check id, an HTTP code and advice."""

    id: str
    message: str
    hint: str
    code: str = "INVALID_CONFIGURATION"
    warning: bool = False


def auto_approve_refused(config: ConsoleConfig) -> Problem | None:
    """Auto-approve outside development and tests (ConsoleAutoApproveInProductionError)."""
    if not config.auto_approve or relaxed_environment():
        return None
    return Problem(
        id="better_console.E003",
        message="AUTO_APPROVE is on outside development: anyone could open an admin session.",
        hint="Turn it on only with DEBUG ('AUTO_APPROVE': DEBUG) and use MAGIC_LINK in production.",
        code="AUTO_APPROVE_IN_PRODUCTION",
    )


def weak_secret(config: ConsoleConfig) -> Problem | None:
    """A signing secret shorter than MIN_SECRET_LENGTH outside development and tests."""
    if config.token_hash is None or relaxed_environment():
        return None
    if len(config.secret) >= MIN_SECRET_LENGTH:
        return None
    return Problem(
        id="better_console.E006",
        message="The TOKEN_HASH secret is too short: session tokens could be forged.",
        hint=f"It needs at least {MIN_SECRET_LENGTH} characters. Run `manage.py better_console "
        f"token generate` and set {TOKEN_HASH_ENV} to the hash it prints.",
        code="WEAK_SECRET",
    )


def wildcard_refused(config: ConsoleConfig) -> Problem | None:
    """The pattern ``*`` outside development and tests without ALLOW_UNAUTHENTICATED_EMAILS."""
    link = config.magic_link
    if link is None or not link.has_wildcard or link.allow_unauthenticated_emails:
        return None
    if relaxed_environment():
        return None
    return Problem(
        id="better_console.E014",
        message="MAGIC_LINK['ALLOWED_EMAILS'] contains '*': any address could sign in.",
        hint="List the addresses or domains ('*@example.com'), or opt in with "
        "MAGIC_LINK['ALLOW_UNAUTHENTICATED_EMAILS'] = True.",
        code="WILDCARD_EMAIL_IN_PRODUCTION",
    )


def refuse_unsafe_start() -> None:
    """Raise the seed's start-up errors: auto-approve, a weak secret or ``*`` in production.

    Other unusable settings are left to the system checks. Management commands that diagnose
    or repair the configuration (``check``, ``better_console``) still run.
    """
    if _repair_command():
        return
    try:
        config = load()
    except ConsoleSettingsError:
        return
    for rule, error in (
        (auto_approve_refused, ConsoleAutoApproveInProductionError),
        (weak_secret, ConsoleWeakSecretError),
        (wildcard_refused, ConsoleWildcardEmailError),
    ):
        problem = rule(config)
        if problem is not None:
            raise error(problem.message, id=problem.id, hint=problem.hint, code=problem.code)


def _repair_command() -> bool:
    program = os.path.basename(sys.argv[0]) if sys.argv else ""
    return (
        program in ("manage.py", "django-admin", "__main__.py")
        and len(sys.argv) > 1
        and sys.argv[1] in _REPAIR_COMMANDS
    )
