"""App config of better_audit: actor context, capture wiring, settings reload and system checks."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig, apps
from django.core.signals import setting_changed
from django.db.models.signals import post_migrate


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
        post_migrate.connect(_sync_triggers, sender=self, dispatch_uid="better_audit.triggers")
        # Registers the system checks (tagged "better_audit") on import.
        from better_audit import checks  # noqa: F401

        if apps.is_installed("better_tenant"):
            # audit_logs has tenant_id but policies of its own (rows may have no tenant).
            from better_audit import trail
            from better_audit.integrity import admin_role, ensure_admin_role_sql
            from better_audit.models import AuditLog
            from better_tenant.inspection import exempt_function, exempt_table
            from better_tenant.registry import register_role

            exempt_table(AuditLog._meta.db_table)
            # The trail's writers run as the owner on purpose: they read only the rows a statement
            # changed (its transition tables) and write only audit entries.
            exempt_function(
                trail.CAPTURE_FUNCTION,
                "better_audit's capture trigger: writes entries of the rows a statement changed",
            )
            exempt_function(
                trail.WRITE_FUNCTION,
                "better_audit's entry writer: inserts entries of the tenant in scope only",
            )
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


def _sync_triggers(*, using: str, plan: Any = None, verbosity: int = 1, **kwargs: Any) -> None:
    """After ``migrate`` (not after ``flush``, which sends no plan), as the role that ran it, the
    capture triggers follow ``BETTER_AUDIT["TABLES"]``."""
    if plan is None:
        return
    from better_audit import trail

    changes = trail.sync(using)
    if changes and verbosity >= 1:
        print(f"  better_audit: capture triggers {' '.join(changes)}")
