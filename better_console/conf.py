"""Settings of better_console, read from ``settings.BETTER_CONSOLE``, and the environment rules.

Development, test run, production
    The seed allows auto-approve, short secrets and the ``"*"`` email pattern only in development
    or in tests. Here *development* means ``settings.DEBUG`` is on, and *a test run* means one of:

    - Django's test environment is set up (``django.test.utils.setup_test_environment()`` has
      run, as ``manage.py test`` and pytest-django do before the first test);
    - the process is pytest (pytest sets ``PYTEST_VERSION`` for its whole run, which covers the
      start-up of Django, before the test environment exists);
    - the process is ``manage.py test``.

    Anything else is production. ``environment()`` is evaluated again on every request, so that
    a process whose settings change while it runs is refused at request time too.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.core.signals import setting_changed

from better_console.exceptions import ConsoleSettingsError
from better_console.registry import PERMISSIONS
from better_console.tokens import MIN_SECRET_LENGTH, is_valid_token_hash, secret_from_hash
from better_core import rates
from better_core.durations import parse_duration
from better_core.settings import AppSettings, SettingsError, check_callable

TOKEN_HASH_ENV = "BETTER_CONSOLE_TOKEN_HASH"
ALLOWED_EMAILS_ENV = "BETTER_CONSOLE_ALLOWED_EMAILS"
CONSOLE_ORIGIN = "https://console.usebetter.dev"

DEFAULTS: dict[str, Any] = {
    # "sha256:<64 hex>" from `manage.py better_console init`; None reads BETTER_CONSOLE_TOKEN_HASH.
    # The part after "sha256:" signs the session tokens.
    "TOKEN_HASH": None,
    # Issue a session to anyone who asks: development and tests only.
    "AUTO_APPROVE": False,
    # None, or a dict enabling the emailed-code handshake; see MAGIC_LINK_DEFAULTS.
    "MAGIC_LINK": None,
    # Lifetime of a session token, "1h" to "7d" (or seconds).
    "TOKEN_LIFETIME": "24h",
    # Browser origins that may call the endpoints (CORS), exact "scheme://host[:port]".
    "ALLOWED_ORIGINS": [CONSOLE_ORIGIN],
    # The levels a session is granted (read < write < admin).
    "ALLOWED_ACTIONS": list(PERMISSIONS),
    # callable(exception) or its dotted path, called when a product handler fails unexpectedly.
    "ON_ERROR": None,
    # Requests per client IP to session init, verify and claim ("20/min", "5/10s"); None: off.
    "THROTTLE": "20/min",
    # The same for session poll, which the console UI calls repeatedly while it waits.
    "POLL_THROTTLE": "120/min",
    # Proxies in front of the app that append to X-Forwarded-For (0: the client is REMOTE_ADDR).
    "NUM_PROXIES": 0,
    # Cache alias holding the throttle counters.
    "CACHE": "default",
}

MAGIC_LINK_DEFAULTS: dict[str, Any] = {
    # Addresses or "*" patterns (a list or a comma-separated string); None reads
    # BETTER_CONSOLE_ALLOWED_EMAILS.
    "ALLOWED_EMAILS": None,
    # callable(email, session_id, code, **context) or its dotted path; overrides better_mail.
    "SEND_CODE": None,
    # Wrong codes accepted before the link is locked.
    "MAX_ATTEMPTS": 5,
    # Allow the pattern "*" (any address) outside development and tests.
    "ALLOW_UNAUTHENTICATED_EMAILS": False,
}

IMPORT_STRINGS = ("ON_ERROR",)

console_settings = AppSettings("BETTER_CONSOLE", DEFAULTS, IMPORT_STRINGS)

MIN_LIFETIME = 3600
MAX_LIFETIME = 7 * 86400
# A magic link (its code, its verification and its claim) is good for this long.
MAGIC_LINK_LIFETIME = 600

_ORIGIN = re.compile(r"^https?://[^/\s?#]+/?$", re.IGNORECASE)


# --- environment ---------------------------------------------------------------------------------


def is_test_run() -> bool:
    """True in a test run (see the module docstring for what counts as one)."""
    from django.test import utils as test_utils

    if hasattr(getattr(test_utils, "_TestState", None), "saved_data"):
        return True
    if "PYTEST_VERSION" in os.environ:
        return True
    return len(sys.argv) > 1 and sys.argv[0].endswith("manage.py") and sys.argv[1] == "test"


def is_development() -> bool:
    """True when settings.DEBUG is on."""
    from django.conf import settings

    return bool(settings.DEBUG)


def environment() -> str:
    """``"development"``, ``"test"`` or ``"production"``."""
    if is_development():
        return "development"
    if is_test_run():
        return "test"
    return "production"


def relaxed_environment() -> bool:
    """True where the seed relaxes its safety rules: development or a test run."""
    return environment() != "production"


# --- parsed configuration ------------------------------------------------------------------------


@dataclass(frozen=True)
class MagicLinkConfig:
    allowed_emails: tuple[str, ...]
    send_code: Callable[..., Any] | None
    max_attempts: int
    allow_unauthenticated_emails: bool

    @property
    def has_wildcard(self) -> bool:
        return "*" in self.allowed_emails


@dataclass(frozen=True)
class ConsoleConfig:
    """BETTER_CONSOLE validated: what the views and the checks work from."""

    token_hash: str | None
    auto_approve: bool
    magic_link: MagicLinkConfig | None
    token_lifetime: int
    allowed_origins: tuple[str, ...]
    allowed_actions: tuple[str, ...]
    on_error: Callable[[BaseException], Any] | None
    throttle: tuple[int, int] | None
    poll_throttle: tuple[int, int] | None
    num_proxies: int
    cache_alias: str

    @property
    def secret(self) -> str:
        return secret_from_hash(self.token_hash or "")

    @property
    def auth_methods(self) -> list[str]:
        methods = []
        if self.auto_approve:
            methods.append("auto_approve")
        if self.magic_link is not None:
            methods.append("magic_link")
        return methods


@dataclass(frozen=True)
class Problem:
    """One thing wrong with BETTER_CONSOLE, as a check id, an HTTP code and advice."""

    id: str
    message: str
    hint: str
    code: str = "INVALID_CONFIGURATION"
    warning: bool = False


def parse_rate(value: Any, key: str) -> tuple[int, int] | None:
    """``"20/min"`` -> (20, 60); also ``"5/10s"``, ``"100/h"``, ``"1000/d"``; None stays None."""
    if value is None:
        return None
    try:
        return rates.parse_rate(value)
    except ValueError:
        raise ConsoleSettingsError(
            f"BETTER_CONSOLE[{key!r}] = {value!r} is not a rate.",
            id="better_console.E011",
            hint=f"Use {rates.RATE_HELP}; None turns throttling off.",
        ) from None


def parse_lifetime(value: Any) -> int:
    """TOKEN_LIFETIME in seconds, within 1h..7d."""
    hint = "Use a duration from 1h to 7d such as '8h', '24h' or '7d' (minutes are 'min')."
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ConsoleSettingsError(
            f"BETTER_CONSOLE['TOKEN_LIFETIME'] = {value!r} is not a duration.",
            id="better_console.E007",
            hint=hint,
        )
    if isinstance(value, int):
        seconds = value
    else:
        try:
            duration = parse_duration(value)
        except ValueError as exc:
            raise ConsoleSettingsError(
                f"BETTER_CONSOLE['TOKEN_LIFETIME']: {exc}", id="better_console.E007", hint=hint
            ) from None
        seconds = int(duration.as_timedelta().total_seconds())
    if not MIN_LIFETIME <= seconds <= MAX_LIFETIME:
        raise ConsoleSettingsError(
            f"BETTER_CONSOLE['TOKEN_LIFETIME'] = {value!r} is outside the range 1h to 7d.",
            id="better_console.E007",
            hint=hint,
        )
    return seconds


def split_emails(value: Any) -> tuple[str, ...]:
    """Patterns from a list or a comma-separated string, stripped and lowercased."""
    items = value.split(",") if isinstance(value, str) else list(value or ())
    return tuple(str(item).strip().lower() for item in items if str(item).strip())


def email_allowed(email: str, patterns: tuple[str, ...]) -> bool:
    """True when ``email`` matches one pattern; ``*`` matches any run of characters.

    Refused whatever the patterns: an address with more than one ``@`` (a quoted local part
    such as ``"x@evil.example"@example.com``, which ``*@example.com`` would otherwise match),
    and one holding a non-ASCII character that lowercases to ASCII (the Kelvin sign, ``K``,
    becomes ``k``), so that a look-alike never matches the address it imitates.
    """
    email = email.strip()
    if email.count("@") != 1 or any(not c.isascii() and c.lower().isascii() for c in email):
        return False
    email = email.lower()
    return any(_glob(pattern).fullmatch(email) for pattern in patterns)


@functools.lru_cache(maxsize=256)
def _glob(pattern: str) -> re.Pattern[str]:
    # Only "*" is special: fnmatch would also give meaning to "?" and "[...]".
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.DOTALL)


def _token_hash() -> str | None:
    value = console_settings.raw("TOKEN_HASH")
    if value is None:
        value = os.environ.get(TOKEN_HASH_ENV)
    if value is None:
        return None
    return str(value).strip() or None


def _magic_link() -> MagicLinkConfig | None:
    value = console_settings.raw("MAGIC_LINK")
    if value is None or value is False:
        return None
    if value is True:
        value = {}
    if not isinstance(value, dict):
        raise ConsoleSettingsError(
            f"BETTER_CONSOLE['MAGIC_LINK'] must be None or a dict, got {type(value).__name__}.",
            id="better_console.E005",
            hint="e.g. {'ALLOWED_EMAILS': ['admin@example.com']}.",
        )
    unknown = sorted(set(value) - set(MAGIC_LINK_DEFAULTS))
    if unknown:
        raise ConsoleSettingsError(
            f"BETTER_CONSOLE['MAGIC_LINK'] has unknown keys: {', '.join(unknown)}.",
            id="better_console.E005",
            hint=f"Known keys: {', '.join(sorted(MAGIC_LINK_DEFAULTS))}.",
        )
    merged = {**MAGIC_LINK_DEFAULTS, **value}
    emails = merged["ALLOWED_EMAILS"]
    if emails is None:
        emails = os.environ.get(ALLOWED_EMAILS_ENV, "")
    if not isinstance(emails, str | list | tuple) or not all(
        isinstance(item, str) for item in ([] if isinstance(emails, str) else emails)
    ):
        raise ConsoleSettingsError(
            "BETTER_CONSOLE['MAGIC_LINK']['ALLOWED_EMAILS'] must be a string or a list of them.",
            id="better_console.E005",
            hint="e.g. 'admin@example.com,ops@example.com' or ['*@example.com'].",
        )
    patterns = split_emails(emails)
    if not patterns:
        raise ConsoleSettingsError(
            "Magic link sign-in is on but no email may use it: ALLOWED_EMAILS is empty.",
            id="better_console.E005",
            hint=f"Set BETTER_CONSOLE['MAGIC_LINK']['ALLOWED_EMAILS'] or {ALLOWED_EMAILS_ENV} "
            "(comma-separated addresses or '*@example.com' patterns).",
        )
    attempts = merged["MAX_ATTEMPTS"]
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
        raise ConsoleSettingsError(
            f"BETTER_CONSOLE['MAGIC_LINK']['MAX_ATTEMPTS'] = {attempts!r} is not a positive "
            "integer.",
            id="better_console.E005",
            hint="The default is 5.",
        )
    try:
        send_code = check_callable(merged["SEND_CODE"], "BETTER_CONSOLE['MAGIC_LINK']['SEND_CODE']")
    except SettingsError as exc:
        raise ConsoleSettingsError(
            str(exc),
            id="better_console.E005",
            hint="A dotted path to a callable(email, session_id, code, **context).",
        ) from None
    return MagicLinkConfig(
        allowed_emails=patterns,
        send_code=send_code,
        max_attempts=attempts,
        allow_unauthenticated_emails=bool(merged["ALLOW_UNAUTHENTICATED_EMAILS"]),
    )


def parse_origins() -> tuple[str, ...]:
    value = console_settings.raw("ALLOWED_ORIGINS")
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not all(
        isinstance(item, str) and _ORIGIN.match(item.strip()) for item in value
    ):
        raise ConsoleSettingsError(
            f"BETTER_CONSOLE['ALLOWED_ORIGINS'] = {value!r} is not a list of origins.",
            id="better_console.E008",
            hint=f"Origins are 'scheme://host[:port]' without a path, e.g. [{CONSOLE_ORIGIN!r}, "
            "'http://localhost:5173'].",
        )
    return tuple(item.strip().rstrip("/").lower() for item in value)


def _actions() -> tuple[str, ...]:
    value = console_settings.raw("ALLOWED_ACTIONS")
    if isinstance(value, str):
        value = [value]
    if (
        not isinstance(value, list | tuple)
        or not value
        or not all(item in PERMISSIONS for item in value)
    ):
        raise ConsoleSettingsError(
            f"BETTER_CONSOLE['ALLOWED_ACTIONS'] = {value!r} is not a list of permission levels.",
            id="better_console.E009",
            hint="Use a non-empty subset of ['read', 'write', 'admin'].",
        )
    return tuple(p for p in PERMISSIONS if p in value)


def _on_error() -> Callable[[BaseException], Any] | None:
    try:
        return check_callable(console_settings.raw("ON_ERROR"), "BETTER_CONSOLE['ON_ERROR']")
    except SettingsError as exc:
        raise ConsoleSettingsError(
            str(exc), id="better_console.E010", hint="A dotted path to a callable(exception)."
        ) from None


def _cache_alias() -> str:
    from django.conf import settings

    alias = console_settings.raw("CACHE")
    if alias not in getattr(settings, "CACHES", {}):
        raise ConsoleSettingsError(
            f"BETTER_CONSOLE['CACHE'] = {alias!r} is not a cache in settings.CACHES.",
            id="better_console.E012",
            hint=f"Use one of: {', '.join(sorted(settings.CACHES)) or 'default'}.",
        )
    return alias


def _num_proxies() -> int:
    value = console_settings.raw("NUM_PROXIES")
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConsoleSettingsError(
            f"BETTER_CONSOLE['NUM_PROXIES'] = {value!r} is not a count.",
            id="better_console.E013",
            hint="0 when clients connect directly, else the number of proxies that append to "
            "X-Forwarded-For.",
        )
    return value


def _auto_approve() -> bool:
    value = console_settings.raw("AUTO_APPROVE")
    if not isinstance(value, bool):
        raise ConsoleSettingsError(
            f"BETTER_CONSOLE['AUTO_APPROVE'] = {value!r} is not True or False.",
            id="better_console.E004",
            hint="e.g. 'AUTO_APPROVE': DEBUG.",
        )
    return value


# Parsers in the order the checks report them; each raises ConsoleSettingsError.
_PARSERS: dict[str, Callable[[], Any]] = {
    "token_hash": _token_hash,
    "auto_approve": _auto_approve,
    "magic_link": _magic_link,
    "token_lifetime": lambda: parse_lifetime(console_settings.raw("TOKEN_LIFETIME")),
    "allowed_origins": parse_origins,
    "allowed_actions": _actions,
    "on_error": _on_error,
    "throttle": lambda: parse_rate(console_settings.raw("THROTTLE"), "THROTTLE"),
    "poll_throttle": lambda: parse_rate(console_settings.raw("POLL_THROTTLE"), "POLL_THROTTLE"),
    "num_proxies": _num_proxies,
    "cache_alias": _cache_alias,
}


def _unknown_keys() -> ConsoleSettingsError | None:
    try:
        unknown = console_settings.unknown_keys()
    except SettingsError as exc:
        return ConsoleSettingsError(
            str(exc), id="better_console.E001", hint="Set BETTER_CONSOLE = {...}."
        )
    if unknown:
        return ConsoleSettingsError(
            f"BETTER_CONSOLE has unknown keys: {', '.join(unknown)}.",
            id="better_console.E001",
            hint=f"Known keys: {', '.join(sorted(DEFAULTS))}.",
        )
    return None


def setting_errors() -> list[ConsoleSettingsError]:
    """Every value of BETTER_CONSOLE that cannot be used (environment rules aside)."""
    first = _unknown_keys()
    if first is not None:
        return [first]
    errors = []
    for parse in _PARSERS.values():
        try:
            parse()
        except ConsoleSettingsError as exc:
            errors.append(exc)
    return errors


@functools.lru_cache(maxsize=1)
def load() -> ConsoleConfig:
    """The configuration, or ConsoleSettingsError for the first unusable value.

    Cached until ``settings.BETTER_CONSOLE`` changes; the environment rules are not part of it
    (see ``safety_problems``), since they depend on DEBUG and on the process.
    """
    errors = setting_errors()
    if errors:
        raise errors[0]
    return ConsoleConfig(**{name: parse() for name, parse in _PARSERS.items()})


def _on_setting_changed(*, setting: str, **_: Any) -> None:
    if setting in ("BETTER_CONSOLE", "CACHES"):
        load.cache_clear()


setting_changed.connect(_on_setting_changed, dispatch_uid="better_console.conf.load")


# --- the seed's refusals -------------------------------------------------------------------------


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


def configuration_problems(config: ConsoleConfig) -> list[Problem]:
    """What is wrong with a parsed configuration in the current environment."""
    problems: list[Problem] = []
    if config.token_hash is None:
        problems.append(
            Problem(
                id="better_console.E002",
                message="No TOKEN_HASH: session tokens cannot be signed.",
                hint=f"Run `manage.py better_console init` and set {TOKEN_HASH_ENV} (or "
                "BETTER_CONSOLE['TOKEN_HASH']) to the hash it prints.",
                code="TOKEN_HASH_MISSING",
            )
        )
    elif not is_valid_token_hash(config.token_hash):
        problems.append(
            Problem(
                id="better_console.W001",
                message="TOKEN_HASH is not in the 'sha256:<64 hex>' form that init prints.",
                hint="Generate one with `manage.py better_console token generate`.",
                warning=True,
            )
        )
    if not config.auto_approve and config.magic_link is None:
        problems.append(
            Problem(
                id="better_console.E015",
                message="No session method configured: nobody can open a console session.",
                hint="Set BETTER_CONSOLE['MAGIC_LINK'] = {'ALLOWED_EMAILS': [...]} or, in "
                "development, 'AUTO_APPROVE': True.",
                code="NO_SESSION_METHOD",
            )
        )
    if config.magic_link is not None and not delivery_available(config):
        problems.append(
            Problem(
                id="better_console.E016",
                message="Magic link sign-in has no way to deliver its code: better_mail is not "
                "installed and MAGIC_LINK['SEND_CODE'] is not set.",
                hint="Add 'better_mail' to INSTALLED_APPS, or set MAGIC_LINK['SEND_CODE'] to a "
                "callable(email, session_id, code, **context).",
                code="EMAIL_DELIVERY_UNAVAILABLE",
            )
        )
    for rule in (auto_approve_refused, weak_secret, wildcard_refused):
        problem = rule(config)
        if problem is not None:
            problems.append(problem)
    return problems


def delivery_available(config: ConsoleConfig) -> bool:
    """True when magic link codes can be sent (SEND_CODE, or better_mail installed)."""
    from django.apps import apps

    link = config.magic_link
    return link is not None and (link.send_code is not None or apps.is_installed("better_mail"))
