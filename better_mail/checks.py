"""System checks of better_mail (ids better_mail.E00x / W00x); they never raise."""

from __future__ import annotations

from typing import Any

from django.core import checks

from better_core.settings import SettingsError


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """``BETTER_MAIL`` problems: unknown keys, rates, CSS mode, fonts, async without Celery."""
    from django.conf import settings

    from better_mail.conf import mail_settings
    from better_mail.exceptions import MailConfigurationError
    from better_mail.sending import celery_available, parse_rate

    messages: list[checks.CheckMessage] = []
    try:
        unknown = mail_settings.unknown_keys()
    except SettingsError as exc:
        return [checks.Error(str(exc), hint="Set BETTER_MAIL = {...}.", id="better_mail.E001")]
    if unknown:
        messages.append(
            checks.Error(
                f"BETTER_MAIL has unknown keys: {', '.join(unknown)}.",
                hint=f"Known keys: {', '.join(sorted(mail_settings.defaults))}.",
                id="better_mail.E001",
            )
        )
    rate = mail_settings.raw("RATE_LIMIT")
    if rate:
        try:
            parse_rate(rate)
        except MailConfigurationError as exc:
            messages.append(checks.Error(str(exc), id="better_mail.E002"))
        backend = settings.CACHES.get("default", {}).get("BACKEND", "")
        if backend.endswith(("LocMemCache", "DummyCache")):
            messages.append(
                checks.Warning(
                    "BETTER_MAIL['RATE_LIMIT'] is counted in the default cache, which is "
                    f"{backend.rsplit('.', 1)[-1]}: each process counts on its own.",
                    hint="Use a shared cache (Redis, Memcached or the database cache) so that "
                    "all workers share one limit.",
                    id="better_mail.W002",
                )
            )
    if mail_settings.raw("INLINE_CSS") not in (True, False, None, "all", "mj-style"):
        messages.append(
            checks.Error(
                f"BETTER_MAIL['INLINE_CSS'] = {mail_settings.raw('INLINE_CSS')!r} is not a mode.",
                hint="Use True (inline <mj-style inline=\"inline\">), 'all' (inline every "
                "<style>) or False.",
                id="better_mail.E003",
            )
        )
    fonts = mail_settings.raw("FONTS")
    if fonts is not None and not (
        isinstance(fonts, dict) and all(isinstance(v, str) for v in fonts.values())
    ):
        messages.append(
            checks.Error(
                "BETTER_MAIL['FONTS'] must be a dict of font name -> stylesheet URL, or None.",
                hint="e.g. {'Inter': 'https://fonts.googleapis.com/css?family=Inter'}.",
                id="better_mail.E004",
            )
        )
    if mail_settings.raw("ASYNC") and not celery_available():
        messages.append(
            checks.Warning(
                "BETTER_MAIL['ASYNC'] is on but Celery is not installed: mails are sent in "
                "process after commit.",
                hint="pip install 'better-django[celery]', or set BETTER_MAIL['ASYNC'] = False.",
                id="better_mail.W001",
            )
        )
    return messages


def check_templates(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Templates whose annotations, files or Jinja2 syntax are broken (better_mail.E005)."""
    from better_mail.exceptions import MailError
    from better_mail.templates import _compile, registry

    messages: list[checks.CheckMessage] = []
    for template in registry.all():
        try:
            template.variables()
            _compile(template)
        except MailError as exc:
            messages.append(
                checks.Error(
                    str(exc),
                    hint="`manage.py better_mail check` lists every template problem.",
                    obj=template,
                    id="better_mail.E005",
                )
            )
    return messages
