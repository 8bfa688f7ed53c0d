"""App config of better_mail: template discovery, anymail tracking, tenant wiring and checks."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.core.signals import setting_changed


class BetterMailConfig(AppConfig):
    name = "better_mail"
    label = "better_mail"
    verbose_name = "Mail"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.apps import apps

        from better_mail import checks, templates, tracking  # noqa: F401 - checks registers checks
        from better_mail.conf import mail_settings

        if mail_settings.raw("AUTODISCOVER"):
            templates.autodiscover()
        tracking.connect()
        setting_changed.connect(_reconfigure, dispatch_uid="better_mail.reconfigure")

        if apps.is_installed("better_tenant"):
            # mail_logs and mail_attempts have a nullable tenant_id and policies of their own
            # (OptionalTenantRLS).
            from better_mail.models import MailAttempt, MailLog
            from better_tenant import inspection

            inspection.exempt_table(MailLog._meta.db_table)
            inspection.exempt_table(MailAttempt._meta.db_table)

        if apps.is_installed("better_console"):
            from better_mail.console import register

            register()


def _reconfigure(*, setting: str, **kwargs: Any) -> None:
    # Compiled templates depend on the fonts, the CSS mode and the apps' mail/ folders.
    if setting in ("BETTER_MAIL", "INSTALLED_APPS"):
        from better_mail.compiler import clear_caches

        clear_caches()
