"""App config of better_audit."""

from __future__ import annotations

from django.apps import AppConfig


class BetterAuditConfig(AppConfig):
    name = "better_audit"
    label = "better_audit"
    verbose_name = "Audit log"
    default_auto_field = "django.db.models.BigAutoField"
