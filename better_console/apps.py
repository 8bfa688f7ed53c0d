"""App config of better_console: settings checks and the start-up refusals of the seed."""

from __future__ import annotations

from django.apps import AppConfig
from django.core import checks


class BetterConsoleConfig(AppConfig):
    name = "better_console"
    label = "better_console"
    verbose_name = "Console"
    default_auto_field = "django.db.models.BigAutoField"
    #: Read by better_tenant's middleware (better_tenant.registry) while the console is installed:
    #: the console protocol authenticates on its own and is never tenant-scoped. Declared, not
    #: registered, because the console imports none of the apps whose products it serves.
    tenant_exempt_paths = ("/.well-known/better/",)

    def ready(self) -> None:
        from better_console.checks import check_settings, check_tables, refuse_unsafe_start

        checks.register(check_settings, "better_console")
        checks.register(check_tables, "better_console", checks.Tags.database)
        # Auto-approve, a weak secret or "*" in production: the server does not start.
        refuse_unsafe_start()
