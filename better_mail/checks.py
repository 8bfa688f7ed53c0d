"""System checks of better_mail; they never raise.

Ids: E001 BETTER_MAIL not a dict or an unknown key; E002 RATE_LIMIT not a rate; E003 INLINE_CSS
not a mode; E004 FONTS not a dict of URLs; E005 a template whose annotations, files or Jinja2 are
broken; E006 another value of the wrong type or out of range (ASYNC, STORE_BODIES, DEFAULT_FROM,
AUTODISCOVER, MAX_ATTEMPTS, RETRY_BACKOFF, RETRY_BACKOFF_MAX, BATCH_SIZE, QUEUE,
STALE_SENDING_AFTER, DEFAULT_PRIORITY); E007 BACKENDS not a dict of aliases to importable
backends; E008 RETENTION not a duration of a day or more. W001 ASYNC without Celery; W002
RATE_LIMIT counted per process.
E001-E004 and E006-E008 are declared with their keys in better_mail.conf.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from django.core import checks


@checks.register("better_mail")
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """``BETTER_MAIL``: one message per bad key, then what its values mean here."""
    from django.conf import settings

    from better_mail.conf import mail_settings

    messages = mail_settings.check()
    if mail_settings.raw("RATE_LIMIT"):
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
    if mail_settings.ASYNC and importlib.util.find_spec("celery") is None:
        messages.append(
            checks.Warning(
                "BETTER_MAIL['ASYNC'] is on but Celery is not installed: mails are sent in "
                "process after commit.",
                hint="pip install 'better-django[celery]', or set BETTER_MAIL['ASYNC'] = False.",
                id="better_mail.W001",
            )
        )
    return messages


@checks.register("better_mail")
def check_templates(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Templates whose annotations, files or Jinja2 syntax are broken (better_mail.E005)."""
    from better_mail.compiler import compile_template
    from better_mail.exceptions import MailError
    from better_mail.templates import registry

    messages: list[checks.CheckMessage] = []
    for template in registry.all():
        try:
            template.variables()
            compile_template(template)
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
