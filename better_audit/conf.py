"""Settings of better_audit, read from ``settings.BETTER_AUDIT``."""

from __future__ import annotations

from typing import Any

from better_core.settings import (
    AppSettings,
    Bool,
    Choice,
    Import,
    Int,
    Invalid,
    Moved,
    Nested,
    Number,
    Setting,
    Str,
    Strings,
    import_callable,
    role_name,
)

RETENTION_KEYS = ("days", "tables")


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


def _retention(value: Any) -> Any:
    problems = retention_problems(value)
    if problems:
        raise Invalid(" ".join(problems))
    return value


def _extractors(value: Any) -> list[Any]:
    # Entries keep their shape: callables, and [factory, {options}] pairs the middleware builds.
    if not isinstance(value, list | tuple):
        raise Invalid(
            "must be a list of extractors (dotted paths, callables or [factory, {options}] "
            f"pairs), got {type(value).__name__}."
        )
    entries: list[Any] = []
    for position, entry in enumerate(value):
        try:
            if isinstance(entry, list | tuple):
                if len(entry) != 2 or not isinstance(entry[1], dict):
                    raise Invalid(f"{entry!r} is not a pair [factory, {{options}}].")
                entries.append([import_callable(entry[0]), entry[1]])
            else:
                entries.append(import_callable(entry))
        except Invalid as exc:
            raise Invalid(f"item {position}: {exc.message}") from None
    return entries


def _enrichment(value: Any) -> Any:
    # The rules themselves are checked by building them (better_audit.checks, E005).
    if not isinstance(value, list | tuple) or not all(isinstance(rule, dict) for rule in value):
        raise Invalid(
            "must be a list of dicts with 'table', 'operation' and enrichment options; got "
            f"{value!r}."
        )
    return value


SCHEMA = {
    "TABLES": Strings(
        [],
        id="better_audit.E001",
        hint='The audited tables: SQL table names or "app_label.Model", e.g. ["projects", '
        '"billing.Invoice"].',
    ),
    "ASYNC_WRITE": Bool(
        False,
        id="better_audit.E017",
        hint="True writes audit rows after commit through Celery instead of in the transaction.",
    ),
    "ON_ERROR": Import(
        None,
        id="better_audit.E016",
        hint="A dotted path to a function(exc, entry) that reports failed writes and hooks.",
    ),
    "BEFORE_LOG": Import(
        [],
        many=True,
        nullable=True,
        id="better_audit.E016",
        hint="Dotted paths of hooks called with each entry before it is written.",
    ),
    "AFTER_LOG": Import(
        [],
        many=True,
        nullable=True,
        id="better_audit.E016",
        hint="Dotted paths of hooks called with each entry after it is written.",
    ),
    "ENRICHMENT": Setting(
        [],
        parse=_enrichment,
        id="better_audit.E005",
        hint="See audit.enrich() for the options a rule takes.",
    ),
    "PRIMARY_KEY": Str(
        "id",
        blank=False,
        id="better_audit.E017",
        hint="The key name a record id is read from when a table has none of its own.",
    ),
    "ON_MISSING_RECORD_ID": Choice(
        "warn",
        choices=("warn", "skip", "throw"),
        id="better_audit.E002",
        hint='Use "warn", "skip" or "throw".',
    ),
    "SKIP_BEFORE_STATE": Strings(
        [],
        id="better_audit.E001",
        hint='Tables logged without a before-state SELECT, e.g. ["events"].',
    ),
    "MAX_BEFORE_STATE_ROWS": Int(
        1000,
        min=0,
        id="better_audit.E003",
        hint="Use a whole number (BATCH_SIZE at least 1, MAX_BEFORE_STATE_ROWS at least 0).",
    ),
    "BATCH_SIZE": Int(
        500,
        min=1,
        id="better_audit.E003",
        hint="Use a whole number (BATCH_SIZE at least 1, MAX_BEFORE_STATE_ROWS at least 0).",
    ),
    "MAX_QUERY_LIMIT": Int(
        1000,
        min=1,
        id="better_audit.E011",
        hint="Use a whole number of at least 1 (default 1000): the largest page that "
        "audit.query().limit(n) may ask for.",
    ),
    # Strict: another set of extractors would record other actors, so the middleware stops.
    "ACTOR_EXTRACTORS": Setting(
        ["better_audit.extractors.from_user", "better_audit.extractors.from_bearer_token"],
        parse=_extractors,
        nullable=True,
        strict=True,
        id="better_audit.E016",
        hint="Dotted paths of functions taking the request, or [factory, {options}] pairs, e.g. "
        '["better_audit.extractors.from_bearer_token", {"claim": "sub"}].',
    ),
    "JWT_KEY": Setting(
        None,
        id="better_audit.E017",
        hint="The key verifying bearer tokens; without it they name no actor (see JWT_UNVERIFIED).",
    ),
    "JWT_UNVERIFIED": Bool(
        False,
        id="better_audit.E017",
        hint="True reads the actor from bearer tokens without verifying them, for a project whose "
        "authentication layer verifies them first (better_audit.W004 says so).",
    ),
    "JWT_ALGORITHMS": Strings(
        ["HS256"], empty=False, id="better_audit.E017", hint="E.g. ['HS256'] or ['RS256']."
    ),
    "FAIL_CLOSED": Bool(
        False,
        id="better_audit.E017",
        hint="True refuses a request whose actor extraction failed; False logs and goes on.",
    ),
    "ON_EXTRACTION_ERROR": Import(
        None,
        id="better_audit.E016",
        hint="A dotted path to a function(exc, request) called when an extractor fails.",
    ),
    "CORRELATION_HEADER": Str(
        "X-Request-ID",
        nullable=True,
        id="better_audit.E017",
        hint="The header carrying a request's correlation id (generated when absent).",
    ),
    "CELERY": Bool(
        True, id="better_audit.E017", hint="True carries the audit context to Celery tasks."
    ),
    "RETENTION": Setting(
        None,
        parse=_retention,
        nullable=True,
        id="better_audit.E010",
        hint='Use {"days": 365} or {"days": 90, "tables": ["sessions", "api_requests"]}, or None '
        "for no retention policy.",
    ),
    # Formerly the setting BETTER_AUDIT_INTEGRITY, which is still read (with a warning).
    "INTEGRITY": Nested(
        {
            "ADMIN_ROLE": Str(
                "better_audit_admin",
                validate=role_name,
                id="better_audit.E015",
                hint="The NOLOGIN role of purge, seal and verify, which the application role "
                "may SET ROLE to (default 'better_audit_admin').",
            ),
            "LATE_TOLERANCE": Number(
                3600,
                min=0,
                nullable=True,
                id="better_audit.E015",
                hint="Seconds an entry may commit after a later seal before verify calls it "
                "back-dated (default 3600); None turns the rule off.",
            ),
            "BATCH_SIZE": Int(
                1000,
                min=1,
                id="better_audit.E015",
                hint="Entries per seal or purge transaction (default 1000).",
            ),
        },
        id="better_audit.E015",
        hint="A dict with ADMIN_ROLE, LATE_TOLERANCE and BATCH_SIZE.",
        moved_from=Moved(
            "BETTER_AUDIT_INTEGRITY",
            warning_id="better_audit.W003",
            conflict_id="better_audit.E014",
        ),
    ),
}

audit_settings = AppSettings("BETTER_AUDIT", SCHEMA, id="better_audit.E013")
