"""App config of better_audit: actor context, capture wiring, settings reload and system checks."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig, apps
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
        # Registers the system checks (tagged "better_audit") on import.
        from better_audit import checks  # noqa: F401

        if apps.is_installed("better_tenant"):
            # audit_logs has tenant_id but policies of its own (rows may have no tenant).
            from better_audit.integrity import admin_role, ensure_admin_role_sql
            from better_audit.models import AuditLog
            from better_tenant.inspection import exempt_table
            from better_tenant.registry import register_role

            exempt_table(AuditLog._meta.db_table)
            # Purge, seal and verify SET ROLE to it (integrity.privileged): `better_tenant init`
            # and the test harness let the app role do so, without inheriting it.
            register_role(
                "better_audit.admin",
                admin_role,
                label="better_audit's admin role",
                purpose="for purge, seal and verify",
                setting="BETTER_AUDIT['INTEGRITY']['ADMIN_ROLE']",
                ensure_sql=ensure_admin_role_sql,
            )

        if apps.is_installed("better_console"):
            from better_audit.console import register

            register()


def _reconfigure(*, setting: str, **kwargs: Any) -> None:
    if setting != "BETTER_AUDIT":
        return
    from better_audit import capture, enrichment, hooks, tables

    tables.configure()
    capture.connect_signals()
    enrichment.registry.reload_settings()
    hooks.reset()
