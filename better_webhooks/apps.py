"""App config of better_webhooks."""

from __future__ import annotations

from django.apps import AppConfig


class BetterWebhooksConfig(AppConfig):
    name = "better_webhooks"
    label = "better_webhooks"
    verbose_name = "Webhooks"
    default_auto_field = "django.db.models.BigAutoField"
