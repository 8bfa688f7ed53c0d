"""Settings of better_mail, read from ``settings.BETTER_MAIL``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils.module_loading import import_string

from better_core import rates
from better_core.settings import (
    AppSettings,
    Bool,
    Choice,
    Int,
    Invalid,
    Number,
    Setting,
    Str,
    to_seconds,
)

PRIORITIES = ("now", "high", "normal", "low")


def _rate(value: Any) -> Any:
    # Kept as written: the sender parses it when it counts.
    if value:
        try:
            rates.parse_rate(value)
        except ValueError:
            raise Invalid(f"= {value!r} is not a rate.") from None
    return value


def _fonts(value: Any) -> Any:
    if not isinstance(value, dict) or not all(isinstance(url, str) for url in value.values()):
        raise Invalid("must be a dict of font name -> stylesheet URL, or None.")
    return value


def _backends(value: Any) -> dict[str, dict[str, Any]]:
    # Read as {alias: {"BACKEND": path, "OPTIONS": {...}}}; the path is imported here so that a
    # typo is a check error, not a failed delivery.
    if not isinstance(value, dict):
        raise Invalid("must be a dict of alias -> dotted backend path (or a dict with BACKEND).")
    backends: dict[str, dict[str, Any]] = {}
    for alias, spec in value.items():
        if not isinstance(alias, str) or not alias:
            raise Invalid(f"has the alias {alias!r}; aliases are non-empty strings.")
        if isinstance(spec, str):
            spec = {"BACKEND": spec}
        if not isinstance(spec, dict) or not isinstance(spec.get("BACKEND"), str):
            raise Invalid(f"[{alias!r}] must be a dotted backend path or {{'BACKEND': path}}.")
        unknown = set(spec) - {"BACKEND", "OPTIONS"}
        if unknown:
            raise Invalid(f"[{alias!r}] has unknown keys {sorted(unknown)}; use BACKEND, OPTIONS.")
        options = spec.get("OPTIONS") or {}
        if not isinstance(options, dict):
            raise Invalid(f"[{alias!r}]['OPTIONS'] must be a dict of backend keyword arguments.")
        try:
            import_string(spec["BACKEND"])
        except ImportError as exc:
            raise Invalid(f"[{alias!r}] = {spec['BACKEND']!r} cannot be imported: {exc}.") from None
        backends[alias] = {"BACKEND": spec["BACKEND"], "OPTIONS": dict(options)}
    return backends


def _retention(value: Any) -> float:
    seconds = value.total_seconds() if isinstance(value, timedelta) else None
    if seconds is None:
        try:
            seconds = to_seconds(value)
        except ValueError as exc:
            raise Invalid(f"is not a duration: {exc}") from None
    if seconds < 86400:
        raise Invalid(f"is {value!r}, shorter than one day.")
    return seconds


SCHEMA = {
    "ASYNC": Bool(
        True,
        id="better_mail.E006",
        hint="Send through Celery after commit; False (or no Celery) sends in-process after "
        "commit.",
    ),
    "STORE_BODIES": Bool(
        False,
        id="better_mail.E006",
        hint="True keeps the rendered subject, HTML and text on the MailLog row (off: metadata).",
    ),
    "FONTS": Setting(
        None,
        parse=_fonts,
        nullable=True,
        id="better_mail.E004",
        hint="e.g. {'Inter': 'https://fonts.googleapis.com/css?family=Inter'}; None links none.",
    ),
    "INLINE_CSS": Choice(
        True,
        choices=(True, False, None, "all", "mj-style"),
        id="better_mail.E003",
        hint="Use True (inline <mj-style inline=\"inline\">), 'all' (inline every <style>) or "
        "False.",
    ),
    "DEFAULT_FROM": Str(
        None,
        nullable=True,
        id="better_mail.E006",
        hint="The sender when send() gets no from_email; None: settings.DEFAULT_FROM_EMAIL.",
    ),
    "AUTODISCOVER": Bool(
        True,
        id="better_mail.E006",
        hint="True imports <app>.mail of every installed app in ready(), registering templates.",
    ),
    "MAX_ATTEMPTS": Int(
        5,
        min=1,
        id="better_mail.E006",
        hint="Attempts before a transiently failing mail is marked failed; the default is 5.",
    ),
    "RETRY_BACKOFF": Number(
        30,
        min=0,
        id="better_mail.E006",
        hint="Seconds before the first retry; the wait doubles per attempt (default 30).",
    ),
    "RETRY_BACKOFF_MAX": Number(
        3600,
        min=0,
        id="better_mail.E006",
        hint="Seconds the doubling retry wait is capped at (default 3600).",
    ),
    "RATE_LIMIT": Setting(
        None,
        parse=_rate,
        nullable=True,
        id="better_mail.E002",
        hint=f"Sends per period across all workers: {rates.RATE_HELP}; None: no limit.",
    ),
    "BATCH_SIZE": Int(
        50,
        min=1,
        id="better_mail.E006",
        hint="Mails per claim, per backend connection and per Celery message (default 50).",
    ),
    "QUEUE": Str(
        None,
        nullable=True,
        id="better_mail.E006",
        hint="The Celery queue of the send tasks; None: the default queue.",
    ),
    "STALE_SENDING_AFTER": Number(
        600,
        min=1,
        id="better_mail.E006",
        hint="Seconds after which a claimed mail counts as abandoned by a crashed worker and is "
        "marked failed (default 600).",
    ),
    "DEFAULT_PRIORITY": Choice(
        "normal",
        choices=PRIORITIES,
        id="better_mail.E006",
        hint="The priority of a send() given none: 'now', 'high', 'normal' (default) or 'low'.",
    ),
    "BACKENDS": Setting(
        {},
        parse=_backends,
        id="better_mail.E007",
        hint="e.g. {'transactional': 'anymail.backends.postmark.EmailBackend'} or "
        "{'bulk': {'BACKEND': path, 'OPTIONS': {...}}}; send(backend='bulk') picks one.",
    ),
    "RETENTION": Setting(
        None,
        parse=_retention,
        nullable=True,
        id="better_mail.E008",
        hint="How long sent, failed and cancelled mails are kept: a timedelta, seconds or "
        "'90d' (at least a day); None keeps them forever.",
    ),
}

mail_settings = AppSettings("BETTER_MAIL", SCHEMA, id="better_mail.E001")
