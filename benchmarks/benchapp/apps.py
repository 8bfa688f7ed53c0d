"""App config of the benchmark models: registers the django-auditlog variant."""

from __future__ import annotations

from django.apps import AppConfig


class BenchAppConfig(AppConfig):
    name = "benchmarks.benchapp"
    label = "benchapp"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from auditlog.registry import auditlog

        from benchmarks.benchapp.models import AuditlogRow

        auditlog.register(AuditlogRow)
