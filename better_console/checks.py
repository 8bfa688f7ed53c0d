"""System checks of better_console and its start-up refusals; the checks never raise.

Ids: E001 BETTER_CONSOLE not a dict or unknown keys; E002 no TOKEN_HASH; E003 auto-approve outside
development; E004 AUTO_APPROVE not a bool; E005 MAGIC_LINK; E006 weak secret; E007 TOKEN_LIFETIME;
E008 ALLOWED_ORIGINS; E009 ALLOWED_ACTIONS; E010 ON_ERROR; E011 THROTTLE / POLL_THROTTLE;
E012 CACHE; E013 NUM_PROXIES; E014 "*" email outside development; E015 no session method;
E016 no way to deliver codes; E017 magic link without its tables (database check).
W001 TOKEN_HASH not in the printed form; W002 throttle counted per process; W003 the tables'
migration is not applied yet.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from django.core import checks

from better_console.conf import (
    auto_approve_refused,
    configuration_problems,
    load,
    relaxed_environment,
    setting_errors,
    weak_secret,
    wildcard_refused,
)
from better_console.exceptions import (
    ConsoleAutoApproveInProductionError,
    ConsoleSettingsError,
    ConsoleWeakSecretError,
    ConsoleWildcardEmailError,
)

# Commands that must run even when the server would refuse to start: `check` reports the
# refusals as errors, `better_console` generates the token that fixes a weak secret.
_REPAIR_COMMANDS = ("check", "better_console")


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Unusable values of BETTER_CONSOLE and the seed's refusals in the current environment."""
    errors = setting_errors()
    if errors:
        return [checks.Error(exc.message, hint=exc.hint or None, id=exc.id) for exc in errors]
    config = load()
    messages: list[checks.CheckMessage] = []
    for problem in configuration_problems(config):
        kind = checks.Warning if problem.warning else checks.Error
        messages.append(kind(problem.message, hint=problem.hint, id=problem.id))
    if (config.throttle or config.poll_throttle) and not relaxed_environment():
        from django.conf import settings

        backend = settings.CACHES.get(config.cache_alias, {}).get("BACKEND", "")
        if backend.endswith(("LocMemCache", "DummyCache")):
            messages.append(
                checks.Warning(
                    f"BETTER_CONSOLE throttles in the {config.cache_alias!r} cache, which is "
                    f"{backend.rsplit('.', 1)[-1]}: each process counts on its own.",
                    hint="Point BETTER_CONSOLE['CACHE'] at a shared cache (Redis, Memcached or "
                    "the database cache) so that all workers share one limit.",
                    id="better_console.W002",
                )
            )
    return messages


def check_tables(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """Magic link needs ``better_console_sessions`` and ``better_console_magic_links``."""
    from django.db import DatabaseError, connections, router

    from better_console.models import ConsoleSession, MagicLink

    try:
        config = load()
    except ConsoleSettingsError:
        return []
    alias = router.db_for_write(MagicLink)
    if config.magic_link is None or not databases or alias not in databases:
        return []
    try:
        with connections[alias].cursor() as cursor:
            present = set(connections[alias].introspection.table_names(cursor))
        pending = _migration_pending(alias)
    except DatabaseError as exc:
        return [
            checks.Warning(
                f"The console tables could not be inspected: {exc}",
                id="better_console.W003",
            )
        ]
    tables = (ConsoleSession._meta.db_table, MagicLink._meta.db_table)
    missing = [name for name in tables if name not in present]
    if not missing:
        return []
    if pending:
        return [
            checks.Warning(
                "Magic link sign-in is configured and its tables are not created yet.",
                hint="Run `manage.py migrate better_console`.",
                id="better_console.W003",
            )
        ]
    return [
        checks.Error(
            f"Magic link sign-in requires the tables {', '.join(missing)}, which are missing "
            "(ADAPTER_REQUIRED).",
            hint="Run `manage.py migrate better_console` (or `manage.py better_console migrate` "
            "for the SQL).",
            id="better_console.E017",
        )
    ]


def _migration_pending(alias: str) -> bool:
    from django.db import connections
    from django.db.migrations.loader import MigrationLoader

    loader = MigrationLoader(connections[alias], ignore_no_migrations=True)
    ours = {key for key in loader.disk_migrations if key[0] == "better_console"}
    return not ours <= set(loader.applied_migrations)


def refuse_unsafe_start() -> None:
    """Raise the seed's start-up errors: auto-approve, a weak secret or ``*`` in production.

    Other unusable settings are left to the system checks. Management commands that diagnose
    or repair the configuration (``check``, ``better_console``) still run.
    """
    if _repair_command():
        return
    try:
        config = load()
    except ConsoleSettingsError:
        return
    for rule, error in (
        (auto_approve_refused, ConsoleAutoApproveInProductionError),
        (weak_secret, ConsoleWeakSecretError),
        (wildcard_refused, ConsoleWildcardEmailError),
    ):
        problem = rule(config)
        if problem is not None:
            raise error(problem.message, id=problem.id, hint=problem.hint, code=problem.code)


def _repair_command() -> bool:
    program = os.path.basename(sys.argv[0]) if sys.argv else ""
    return (
        program in ("manage.py", "django-admin", "__main__.py")
        and len(sys.argv) > 1
        and sys.argv[1] in _REPAIR_COMMANDS
    )
