"""Settings of better_console, read from ``settings.BETTER_CONSOLE``, and the configuration.

What development and production allow is in ``better_console.environment`` and
``better_console.refusals``; the email patterns are in ``better_console.email_policy``.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.core.signals import setting_changed

from better_console.email_policy import split_emails
from better_console.exceptions import ConsoleSettingsError
from better_console.registry import PERMISSIONS
from better_console.tokens import secret_from_hash
from better_core import rates
from better_core.durations import parse_duration
from better_core.settings import AppSettings, Bool, Import, Int, Invalid, Nested, Setting, Str

TOKEN_HASH_ENV = "BETTER_CONSOLE_TOKEN_HASH"
ALLOWED_EMAILS_ENV = "BETTER_CONSOLE_ALLOWED_EMAILS"
CONSOLE_ORIGIN = "https://console.usebetter.dev"

MIN_LIFETIME = 3600
MAX_LIFETIME = 7 * 86400

_ORIGIN = re.compile(r"^https?://[^/\s?#]+/?$", re.IGNORECASE)


# --- the parsed configuration --------------------------------------------------------------------


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


# --- parsers -------------------------------------------------------------------------------------


def parse_token_hash(value: Any) -> str | None:
    """The configured hash, else BETTER_CONSOLE_TOKEN_HASH; None when neither is set."""
    if value is None:
        value = os.environ.get(TOKEN_HASH_ENV)
    if value is None:
        return None
    return str(value).strip() or None


def parse_lifetime(value: Any) -> int:
    """TOKEN_LIFETIME in seconds, within 1h..7d."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise Invalid(f"= {value!r} is not a duration.")
    if isinstance(value, int):
        seconds = value
    else:
        try:
            seconds = int(parse_duration(value).as_timedelta().total_seconds())
        except ValueError as exc:
            raise Invalid(f"is not a duration: {exc}") from None
    if not MIN_LIFETIME <= seconds <= MAX_LIFETIME:
        raise Invalid(f"= {value!r} is outside the range 1h to 7d.")
    return seconds


def parse_rate(value: Any) -> tuple[int, int]:
    """``"20/min"`` -> (20, 60); also ``"5/10s"``, ``"100/h"``, ``"1000/d"``."""
    try:
        return rates.parse_rate(value)
    except ValueError:
        raise Invalid(f"= {value!r} is not a rate.") from None


def parse_origins(value: Any) -> tuple[str, ...]:
    """Exact browser origins, lowercased and without a trailing slash."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not all(
        isinstance(item, str) and _ORIGIN.match(item.strip()) for item in value
    ):
        raise Invalid(f"= {value!r} is not a list of origins.")
    return tuple(item.strip().rstrip("/").lower() for item in value)


def parse_actions(value: Any) -> tuple[str, ...]:
    """The permission levels a session is granted, in the order of PERMISSIONS."""
    if isinstance(value, str):
        value = [value]
    if (
        not isinstance(value, list | tuple)
        or not value
        or not all(item in PERMISSIONS for item in value)
    ):
        raise Invalid(f"= {value!r} is not a list of permission levels.")
    return tuple(p for p in PERMISSIONS if p in value)


def parse_allowed_emails(value: Any) -> tuple[str, ...]:
    """Address patterns, else those of BETTER_CONSOLE_ALLOWED_EMAILS when None."""
    if value is None:
        value = os.environ.get(ALLOWED_EMAILS_ENV, "")
    if not isinstance(value, str | list | tuple) or not all(
        isinstance(item, str) for item in ([] if isinstance(value, str) else value)
    ):
        raise Invalid("must be a string or a list of them.")
    return split_emails(value)


def _cache_alias(alias: str) -> None:
    from django.conf import settings

    if alias not in getattr(settings, "CACHES", {}):
        raise Invalid(
            f"= {alias!r} is not a cache in settings.CACHES.",
            hint=f"Use one of: {', '.join(sorted(settings.CACHES)) or 'default'}.",
        )


def _magic_link(values: dict[str, Any]) -> MagicLinkConfig:
    if not values["ALLOWED_EMAILS"]:
        raise Invalid(
            "turns magic link sign-in on, but no email may use it: ALLOWED_EMAILS is empty.",
            hint=f"Set BETTER_CONSOLE['MAGIC_LINK']['ALLOWED_EMAILS'] or {ALLOWED_EMAILS_ENV} "
            "(comma-separated addresses or '*@example.com' patterns).",
        )
    return MagicLinkConfig(
        allowed_emails=values["ALLOWED_EMAILS"],
        send_code=values["SEND_CODE"],
        max_attempts=values["MAX_ATTEMPTS"],
        allow_unauthenticated_emails=values["ALLOW_UNAUTHENTICATED_EMAILS"],
    )


# --- the schema ----------------------------------------------------------------------------------

SCHEMA = {
    "TOKEN_HASH": Setting(
        None,
        parse=parse_token_hash,
        id="better_console.E002",
        hint=f"'sha256:<64 hex>' from `manage.py better_console init`; None reads "
        f"{TOKEN_HASH_ENV}.",
    ),
    "AUTO_APPROVE": Bool(
        False,
        id="better_console.E004",
        hint="Issue a session to anyone who asks, in development and tests: 'AUTO_APPROVE': DEBUG.",
    ),
    "MAGIC_LINK": Nested(
        {
            "ALLOWED_EMAILS": Setting(
                None,
                parse=parse_allowed_emails,
                id="better_console.E005",
                hint="e.g. 'admin@example.com,ops@example.com' or ['*@example.com'].",
            ),
            "SEND_CODE": Import(
                None,
                id="better_console.E005",
                hint="A dotted path to a callable(email, session_id, code, **context).",
            ),
            "MAX_ATTEMPTS": Int(
                5,
                min=1,
                id="better_console.E005",
                hint="Wrong codes accepted before the link is locked; the default is 5.",
            ),
            "ALLOW_UNAUTHENTICATED_EMAILS": Bool(
                False,
                id="better_console.E005",
                hint="True allows the pattern '*' (any address) outside development and tests.",
            ),
        },
        optional=True,
        build=_magic_link,
        id="better_console.E005",
        hint="None, or a dict enabling the emailed-code handshake, e.g. "
        "{'ALLOWED_EMAILS': ['admin@example.com']}.",
    ),
    "TOKEN_LIFETIME": Setting(
        "24h",
        parse=parse_lifetime,
        id="better_console.E007",
        hint="Use a duration from 1h to 7d such as '8h', '24h' or '7d' (minutes are 'min').",
    ),
    "ALLOWED_ORIGINS": Setting(
        [CONSOLE_ORIGIN],
        parse=parse_origins,
        id="better_console.E008",
        hint=f"Origins are 'scheme://host[:port]' without a path, e.g. [{CONSOLE_ORIGIN!r}, "
        "'http://localhost:5173'].",
    ),
    "ALLOWED_ACTIONS": Setting(
        list(PERMISSIONS),
        parse=parse_actions,
        id="better_console.E009",
        hint="Use a non-empty subset of ['read', 'write', 'admin'].",
    ),
    "ON_ERROR": Import(
        None,
        id="better_console.E010",
        hint="A dotted path to a callable(exception), called when a product handler fails.",
    ),
    "THROTTLE": Setting(
        "20/min",
        parse=parse_rate,
        nullable=True,
        id="better_console.E011",
        hint=f"Requests per client IP to session init, verify and claim: {rates.RATE_HELP}; "
        "None turns throttling off.",
    ),
    "POLL_THROTTLE": Setting(
        "120/min",
        parse=parse_rate,
        nullable=True,
        id="better_console.E011",
        hint=f"Requests per client IP to session poll: {rates.RATE_HELP}; None turns throttling "
        "off.",
    ),
    "NUM_PROXIES": Int(
        0,
        min=0,
        id="better_console.E013",
        hint="0 when clients connect directly, else the number of proxies that append to "
        "X-Forwarded-For.",
    ),
    "CACHE": Str(
        "default",
        validate=_cache_alias,
        id="better_console.E012",
        hint="The cache alias holding the throttle counters.",
    ),
}

# CACHE names an entry of CACHES.
console_settings = AppSettings(
    "BETTER_CONSOLE", SCHEMA, id="better_console.E001", reload_on=("CACHES",)
)


@functools.lru_cache(maxsize=1)
def load() -> ConsoleConfig:
    """The configuration, or ConsoleSettingsError for the first unusable value.

    Cached until ``settings.BETTER_CONSOLE`` changes; the environment rules are not part of it
    (see ``better_console.refusals``), since they depend on DEBUG and on the process.
    """
    errors = [problem for problem in console_settings.problems() if not problem.warning]
    if errors:
        raise ConsoleSettingsError(errors[0].message, id=errors[0].id, hint=errors[0].hint)
    return ConsoleConfig(
        token_hash=console_settings.TOKEN_HASH,
        auto_approve=console_settings.AUTO_APPROVE,
        magic_link=console_settings.MAGIC_LINK,
        token_lifetime=console_settings.TOKEN_LIFETIME,
        allowed_origins=console_settings.ALLOWED_ORIGINS,
        allowed_actions=console_settings.ALLOWED_ACTIONS,
        on_error=console_settings.ON_ERROR,
        throttle=console_settings.THROTTLE,
        poll_throttle=console_settings.POLL_THROTTLE,
        num_proxies=console_settings.NUM_PROXIES,
        cache_alias=console_settings.CACHE,
    )


def _on_setting_changed(*, setting: str, **_: Any) -> None:
    if setting in ("BETTER_CONSOLE", "CACHES"):
        load.cache_clear()


setting_changed.connect(_on_setting_changed, dispatch_uid="better_console.conf.load")
