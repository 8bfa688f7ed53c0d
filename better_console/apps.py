"""App config of better_console: settings checks and the start-up refusals of the seed."""

from __future__ import annotations

from django.apps import AppConfig


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
        from better_console import checks  # noqa: F401 - registers the system checks
        from better_console.refusals import refuse_unsafe_start

        # Auto-approve, a weak secret or "*" in production: the server does not start.
        refuse_unsafe_start()
