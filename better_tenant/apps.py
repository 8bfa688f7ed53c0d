"""App config of better_tenant: signals, system checks and Celery propagation."""

from __future__ import annotations

from django.apps import AppConfig, apps


class BetterTenantConfig(AppConfig):
    name = "better_tenant"
    label = "better_tenant"
    verbose_name = "Tenants"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from better_tenant import checks, errors, signals  # noqa: F401 - registers checks, receivers
        from better_tenant.conf import tenant_settings

        errors.connect()

        if tenant_settings.raw("CELERY"):
            from better_tenant import celery

            celery.connect()

        if apps.is_installed("better_console"):
            from better_tenant.console import register

            register()
