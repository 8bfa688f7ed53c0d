"""App config of better_audit: actor context, capture wiring, settings reload and system checks."""

from __future__ import annotations

import importlib.util
from typing import Any

from django.apps import AppConfig
from django.core import checks
from django.core.signals import setting_changed


class BetterAuditConfig(AppConfig):
    name = "better_audit"
    label = "better_audit"
    verbose_name = "Audit log"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Actor context: Celery propagation and the context of management commands.
        from better_audit import celery as audit_celery
        from better_audit import commands as audit_commands
        from better_audit.conf import audit_settings

        if audit_settings.raw("CELERY"):
            audit_celery.connect()
        audit_commands.install_command_context()

        # Capture: the audited tables, the wrapped write paths and the save receivers.
        from better_audit import capture, tables

        tables.configure()
        capture.install()
        capture.connect_signals()
        setting_changed.connect(_reconfigure, dispatch_uid="better_audit.reconfigure")
        checks.register(check_configuration, "better_audit")
        from better_audit.checks import check_query_and_retention

        checks.register(check_query_and_retention, "better_audit")

        from django.apps import apps

        if apps.is_installed("better_tenant"):
            # audit_logs has tenant_id but policies of its own (rows may have no tenant).
            from better_audit.models import AuditLog
            from better_tenant import inspection

            inspection.EXEMPT_TABLES.add(AuditLog._meta.db_table)


def _reconfigure(*, setting: str, **kwargs: Any) -> None:
    if setting != "BETTER_AUDIT":
        return
    from better_audit import capture, enrichment, hooks, tables

    tables.configure()
    capture.connect_signals()
    enrichment.registry.reload_settings()
    hooks.reset()


def check_configuration(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """``BETTER_AUDIT`` problems: tables, limits and enrichment rules."""
    from better_audit import enrichment, tables
    from better_audit.conf import audit_settings
    from better_audit.exceptions import AuditConfigurationError

    messages: list[checks.CheckMessage] = []
    for code, message, hint in tables.PROBLEMS:
        level = checks.Warning if code.startswith("W") else checks.Error
        messages.append(level(message, hint=hint, id=f"better_audit.{code}"))
    if audit_settings.raw("ASYNC_WRITE"):
        if importlib.util.find_spec("celery") is None:
            messages.append(
                checks.Error(
                    "BETTER_AUDIT['ASYNC_WRITE'] is on, but Celery is not installed.",
                    hint="pip install 'better-django[celery]', or turn ASYNC_WRITE off.",
                    id="better_audit.E006",
                )
            )
        if audit_settings.raw("ON_ERROR") is None:
            messages.append(
                checks.Warning(
                    "BETTER_AUDIT['ASYNC_WRITE'] is on without ON_ERROR: an audit entry that "
                    "cannot be written after commit is only logged.",
                    hint="Set BETTER_AUDIT['ON_ERROR'] to a function(exc, entry) that reports "
                    "to your error tracking.",
                    id="better_audit.W002",
                )
            )
    try:
        enrichment.settings_rules()
    except AuditConfigurationError as exc:
        messages.append(
            checks.Error(
                str(exc),
                hint="See audit.enrich() for the options a rule takes.",
                id="better_audit.E005",
            )
        )
    return messages
