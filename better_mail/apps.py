"""App config of better_mail."""

from __future__ import annotations

from django.apps import AppConfig


class BetterMailConfig(AppConfig):
    name = "better_mail"
    label = "better_mail"
    verbose_name = "Mail"
    default_auto_field = "django.db.models.BigAutoField"
