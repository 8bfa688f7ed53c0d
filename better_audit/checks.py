"""better_audit's system checks (registered on import, from ``apps.ready()``) and RETENTION."""

from __future__ import annotations

import importlib.util
from typing import Any

from django.core import checks

RETENTION_KEYS = ("days", "tables")


@checks.register("better_audit")
def check_configuration(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """``BETTER_AUDIT`` problems: tables, limits and enrichment rules."""
    from better_audit import enrichment, tables
    from better_audit.conf import audit_settings
    from better_audit.exceptions import AuditConfigurationError

    messages: list[checks.CheckMessage] = []
    for code, message, hint in tables.PROBLEMS:
        level = checks.Warning if code.startswith("W") else checks.Error
        messages.append(level(message, hint=hint, id=f"better_audit.{code}"))
    if audit_settings.raw("ASYNC_WRITE"):
        if importlib.util.find_spec("celery") is None:
            messages.append(
                checks.Error(
                    "BETTER_AUDIT['ASYNC_WRITE'] is on, but Celery is not installed.",
                    hint="pip install 'better-django[celery]', or turn ASYNC_WRITE off.",
                    id="better_audit.E006",
                )
            )
        if audit_settings.raw("ON_ERROR") is None:
            messages.append(
                checks.Warning(
                    "BETTER_AUDIT['ASYNC_WRITE'] is on without ON_ERROR: an audit entry that "
                    "cannot be written after commit is only logged.",
                    hint="Set BETTER_AUDIT['ON_ERROR'] to a function(exc, entry) that reports "
                    "to your error tracking.",
                    id="better_audit.W002",
                )
            )
    try:
        enrichment.settings_rules()
    except AuditConfigurationError as exc:
        messages.append(
            checks.Error(
                str(exc),
                hint="See audit.enrich() for the options a rule takes.",
                id="better_audit.E005",
            )
        )
    return messages


@checks.register("better_audit")
def check_query_and_retention(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """``better_audit.E010``/``E011``: a malformed RETENTION or MAX_QUERY_LIMIT."""
    from better_audit.conf import audit_settings

    messages: list[checks.CheckMessage] = []
    limit = audit_settings.raw("MAX_QUERY_LIMIT")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        messages.append(
            checks.Error(
                f"BETTER_AUDIT['MAX_QUERY_LIMIT'] is {limit!r}.",
                hint="Use a whole number of at least 1 (default 1000): the largest page that "
                "audit.query().limit(n) may ask for.",
                id="better_audit.E011",
            )
        )
    for problem in retention_problems(audit_settings.raw("RETENTION")):
        messages.append(
            checks.Error(
                f"BETTER_AUDIT['RETENTION'] {problem}",
                hint='Use {"days": 365} or {"days": 90, "tables": ["sessions", "api_requests"]}, '
                "or None for no retention policy.",
                id="better_audit.E010",
            )
        )
    return messages


@checks.register("better_audit")
def check_django_release(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """``better_audit.E012``: a Django release, or a changed method, capture was not verified on.

    Capture wraps Django's write internals (``better_audit.seams``); on a release it was not
    verified on it could miss changes or lose its single-statement path without a sound, so it
    says so here instead.
    """
    from better_audit import seams

    return [
        checks.Error(
            problem,
            hint="Use a Django release better_audit supports (see the README's matrix), or "
            "upgrade better-django. Silence better_audit.E012 only after running the audit "
            "suite on this release.",
            id="better_audit.E012",
        )
        for problem in seams.problems()
    ]


def retention_problems(value: Any) -> list[str]:
    """What is wrong with a RETENTION value, as sentence tails (empty when it is usable)."""
    if value is None:
        return []
    if not isinstance(value, dict):
        return [f"must be a dict or None; got {value!r}."]
    problems = []
    unknown = sorted(set(value) - set(RETENTION_KEYS), key=str)
    if unknown:
        problems.append(
            f"has unknown keys {', '.join(map(repr, unknown))}; the keys are 'days' and 'tables'."
        )
    days = value.get("days")
    if "days" not in value:
        problems.append("has no 'days': give the number of days entries are kept.")
    elif isinstance(days, bool) or not isinstance(days, int) or days < 1:
        problems.append(f"'days' must be a positive whole number; got {days!r}.")
    tables = value.get("tables")
    if tables is not None and (
        isinstance(tables, str)
        or not isinstance(tables, (list, tuple))
        or not tables
        or not all(isinstance(t, str) and t for t in tables)
    ):
        problems.append(
            f"'tables' must be a non-empty list of table names (or left out for every table); "
            f"got {tables!r}."
        )
    return problems


def retention_policy() -> tuple[int | None, list[str] | None]:
    """The configured ``(days, tables)``; ``(None, None)`` when RETENTION is not set or invalid."""
    from better_audit.conf import audit_settings
    from better_audit.tables import resolve_table_name

    value = audit_settings.raw("RETENTION")
    if value is None or retention_problems(value):
        return None, None
    tables = value.get("tables")
    return value["days"], None if tables is None else [resolve_table_name(t) for t in tables]
