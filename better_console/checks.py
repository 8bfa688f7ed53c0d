"""System checks of better_console; the checks never raise.

Ids: E001 BETTER_CONSOLE not a dict or an unknown key; E002 no TOKEN_HASH; E003 auto-approve
outside development; E004 AUTO_APPROVE not a bool; E005 MAGIC_LINK; E006 weak secret; E007
TOKEN_LIFETIME; E008 ALLOWED_ORIGINS; E009 ALLOWED_ACTIONS; E010 ON_ERROR; E011 THROTTLE /
POLL_THROTTLE; E012 CACHE; E013 NUM_PROXIES; E014 "*" email outside development; E015 no session
method; E016 no way to deliver codes; E017 magic link without its tables (database check).
W001 TOKEN_HASH not in the printed form; W002 throttle counted per process; W003 the tables'
migration is not applied yet. The ids of single values are declared with their keys in
better_console.conf, those of the refusals (E003, E006, E014) in better_console.refusals.
"""

from __future__ import annotations

from typing import Any

from django.core import checks

from better_console.conf import TOKEN_HASH_ENV, ConsoleConfig, console_settings, load
from better_console.email_policy import delivery_available
from better_console.environment import relaxed_environment
from better_console.exceptions import ConsoleSettingsError
from better_console.refusals import Problem, auto_approve_refused, weak_secret, wildcard_refused
from better_console.tokens import is_valid_token_hash


@checks.register("better_console")
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Unusable values of BETTER_CONSOLE and the seed's refusals in the current environment."""
    messages = console_settings.check()
    if messages:
        return messages
    config = load()
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


def configuration_problems(config: ConsoleConfig) -> list[Problem]:
    """What is wrong with a parsed configuration in the current environment."""
    problems: list[Problem] = []
    if config.token_hash is None:
        problems.append(
            Problem(
                id="better_console.E002",
                message="No TOKEN_HASH: session tokens cannot be signed.",
                hint=f"Run `manage.py better_console init` and set {TOKEN_HASH_ENV} (or "
                "BETTER_CONSOLE['TOKEN_HASH']) to the hash it prints.",
                code="TOKEN_HASH_MISSING",
            )
        )
    elif not is_valid_token_hash(config.token_hash):
        problems.append(
            Problem(
                id="better_console.W001",
                message="TOKEN_HASH is not in the 'sha256:<64 hex>' form that init prints.",
                hint="Generate one with `manage.py better_console token generate`.",
                warning=True,
            )
        )
    if not config.auto_approve and config.magic_link is None:
        problems.append(
            Problem(
                id="better_console.E015",
                message="No session method configured: nobody can open a console session.",
                hint="Set BETTER_CONSOLE['MAGIC_LINK'] = {'ALLOWED_EMAILS': [...]} or, in "
                "development, 'AUTO_APPROVE': True.",
                code="NO_SESSION_METHOD",
            )
        )
    if config.magic_link is not None and not delivery_available(config):
        problems.append(
            Problem(
                id="better_console.E016",
                message="Magic link sign-in has no way to deliver its code: better_mail is not "
                "installed and MAGIC_LINK['SEND_CODE'] is not set.",
                hint="Add 'better_mail' to INSTALLED_APPS, or set MAGIC_LINK['SEND_CODE'] to a "
                "callable(email, session_id, code, **context).",
                code="EMAIL_DELIVERY_UNAVAILABLE",
            )
        )
    for rule in (auto_approve_refused, weak_secret, wildcard_refused):
        problem = rule(config)
        if problem is not None:
            problems.append(problem)
    return problems


@checks.register("better_console", checks.Tags.database)
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
