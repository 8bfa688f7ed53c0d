"""App config of better_audit."""

from __future__ import annotations

from django.apps import AppConfig


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
