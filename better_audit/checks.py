"""better_audit's system checks (registered on import, from ``apps.ready()``) and RETENTION.

Ids: E001 TABLES or SKIP_BEFORE_STATE not a list of table names; E002 ON_MISSING_RECORD_ID;
E003 MAX_BEFORE_STATE_ROWS or BATCH_SIZE; E004 an audited model without a single-column primary
key; E005 an ENRICHMENT rule; E006 ASYNC_WRITE without Celery; E010 RETENTION; E011
MAX_QUERY_LIMIT; E012 a Django release capture was not verified on; E013 BETTER_AUDIT not a dict
or an unknown key; E014 both BETTER_AUDIT['INTEGRITY'] and BETTER_AUDIT_INTEGRITY set; E015 an
INTEGRITY value; E016 a hook, handler or extractor that does not import; E017 another value of
the wrong type; E018 (``check --database``) an audited table whose capture triggers are absent
or out of date. W001 a listed table that no installed model has; W002 ASYNC_WRITE without
ON_ERROR; W003 BETTER_AUDIT_INTEGRITY still used; W004 bearer tokens read unverified
(JWT_UNVERIFIED). The ids of single values are declared with their keys in better_audit.conf.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from django.core import checks

from better_audit.conf import audit_settings
from better_audit.conf import retention_problems as retention_problems  # read by the purge command

# Keys reported by check_query_and_retention rather than check_configuration (each once).
QUERY_AND_RETENTION = ("MAX_QUERY_LIMIT", "RETENTION")
# What tables.configure() finds while resolving the audited tables. It notes the bad values of
# TABLES, ON_MISSING_RECORD_ID and the limits too (E001-E003), which the settings report.
TABLE_PROBLEMS = {"W001": "better_audit.W001", "E004": "better_audit.E004"}


@checks.register("better_audit")
def check_configuration(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """``BETTER_AUDIT``: one message per bad key, then tables, async writes and enrichment."""
    from better_audit import enrichment, tables
    from better_audit.exceptions import AuditConfigurationError

    problems = [p for p in audit_settings.problems() if p.key not in QUERY_AND_RETENTION]
    messages = [problem.as_check() for problem in problems]
    for code, message, hint in tables.PROBLEMS:
        if code in TABLE_PROBLEMS:
            level = checks.Warning if code.startswith("W") else checks.Error
            messages.append(level(message, hint=hint, id=TABLE_PROBLEMS[code]))
    if audit_settings.ASYNC_WRITE:
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
    if audit_settings.JWT_UNVERIFIED and audit_settings.JWT_KEY is None:
        messages.append(
            checks.Warning(
                "BETTER_AUDIT['JWT_UNVERIFIED'] is on: the audit actor is read from bearer tokens "
                "that nothing here verifies, so a client can name any actor unless a layer in "
                "front of Django verifies every token first.",
                hint="Set BETTER_AUDIT['JWT_KEY'] (the key that signs the tokens) and turn "
                "JWT_UNVERIFIED off.",
                id="better_audit.W004",
            )
        )
    if "ENRICHMENT" not in {problem.key for problem in problems}:
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
    return [
        problem.as_check()
        for problem in audit_settings.problems()
        if problem.key in QUERY_AND_RETENTION
    ]


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


@checks.register("better_audit", checks.Tags.database)
def check_triggers(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """``better_audit.E018``: an audited table without its capture triggers (``migrate`` installs
    them), so changes outside the ORM would escape the trail and ORM ones lose their entry."""
    from django.db import DatabaseError, connections

    from better_audit import trail

    problems: list[checks.CheckMessage] = []
    for alias in databases or ():
        if connections[alias].vendor != "postgresql":
            continue
        try:
            missing = trail.missing(alias)
        except DatabaseError:
            continue  # no audit tables on this database yet: migrate reports that
        if missing:
            problems.append(
                checks.Error(
                    f"Audited tables without their capture triggers on {alias!r}: "
                    f"{', '.join(missing)}.",
                    hint="Run manage.py migrate as the owner role: it installs them from "
                    "BETTER_AUDIT['TABLES'] and the enrichment rules.",
                    id="better_audit.E018",
                )
            )
    return problems


def retention_policy() -> tuple[int | None, list[str] | None]:
    """The configured ``(days, tables)``; ``(None, None)`` when RETENTION is not set or invalid."""
    from better_audit.tables import resolve_table_name

    value = audit_settings.RETENTION
    if value is None:
        return None, None
    tables = value.get("tables")
    return value["days"], None if tables is None else [resolve_table_name(t) for t in tables]
