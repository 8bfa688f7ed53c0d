"""Settings of better_mail, read from ``settings.BETTER_MAIL``."""

from __future__ import annotations

from typing import Any

from better_core import rates
from better_core.settings import AppSettings, Bool, Choice, Int, Invalid, Number, Setting, Str


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
}

mail_settings = AppSettings("BETTER_MAIL", SCHEMA, id="better_mail.E001")
