"""App config of better_webhooks: system checks and tenant-inspection exemptions."""

from __future__ import annotations

from django.apps import AppConfig, apps


class BetterWebhooksConfig(AppConfig):
    name = "better_webhooks"
    label = "better_webhooks"
    verbose_name = "Webhooks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from better_webhooks import checks  # noqa: F401 - registers the system checks

        if apps.is_installed("better_tenant"):
            # Nullable tenant_id with policies of their own (OptionalTenantRLS).
            from better_tenant import inspection
            from better_webhooks.models import (
                WebhookDelivery,
                WebhookDeliveryAttempt,
                WebhookEndpoint,
                WebhookMessage,
            )

            tables = (WebhookEndpoint, WebhookMessage, WebhookDelivery, WebhookDeliveryAttempt)
            for model in tables:
                inspection.exempt_table(model._meta.db_table)

        if apps.is_installed("better_console"):
            from better_webhooks.console import register

            register()
