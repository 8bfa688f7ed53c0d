"""Settings of better_mail, read from ``settings.BETTER_MAIL``."""

from __future__ import annotations

from better_core.settings import AppSettings

DEFAULTS = {
    # Send through Celery after commit; False (or no Celery) sends in-process after commit.
    "ASYNC": True,
    # Keep the rendered subject/HTML/text on the MailLog row (off: only metadata is stored).
    "STORE_BODIES": False,
    # Web fonts MJML may link, {"Name": "https://..."}; None links none.
    "FONTS": None,
    # Inline the CSS of <mj-style> and the MJML defaults into style attributes.
    "INLINE_CSS": True,
    # Sender used when send() gets no from_email (None: settings.DEFAULT_FROM_EMAIL).
    "DEFAULT_FROM": None,
    # Import <app>.mail of every installed app in ready() so its templates register.
    "AUTODISCOVER": True,
    # Attempts before a transiently failing mail is marked failed; the wait starts at
    # RETRY_BACKOFF seconds and doubles per attempt, capped at RETRY_BACKOFF_MAX.
    "MAX_ATTEMPTS": 5,
    "RETRY_BACKOFF": 30,
    "RETRY_BACKOFF_MAX": 3600,
    # Sends allowed per period across all workers, e.g. "100/m", "10/s", "5000/h"; None: no limit.
    "RATE_LIMIT": None,
    # Mails per claim, per backend connection and per Celery message of send_many.
    "BATCH_SIZE": 50,
    # Celery queue of the send tasks (None: the default queue).
    "QUEUE": None,
    # A mail claimed ("sending") longer than this many seconds is considered abandoned by a
    # crashed worker; send_due() marks it failed, never sends it again.
    "STALE_SENDING_AFTER": 600,
}

IMPORT_STRINGS: tuple[str, ...] = ()

mail_settings = AppSettings("BETTER_MAIL", DEFAULTS, IMPORT_STRINGS)
