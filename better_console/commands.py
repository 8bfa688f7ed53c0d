"""The work of ``manage.py better_console``: idempotent table SQL, setup checks, revocation."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from django.apps import apps
from django.core import checks as django_checks
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import connections, models, transaction
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.recorder import MigrationRecorder

from better_console.tokens import is_valid_token_hash
from better_core.commands import ERROR, INFO, OK, WARNING
from better_core.roles import literal, qn

APP = "better_console"
SQL_FILENAME = "better_console_tables.sql"
TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")


# --- init -----------------------------------------------------------------------------------------


def parse_emails(value: str) -> list[str]:
    """The addresses of a comma-separated list, each validated; ValueError names the bad one."""
    emails = [part.strip() for part in (value or "").split(",") if part.strip()]
    if not emails:
        raise ValueError("give at least one email address, e.g. admin@example.com.")
    for email in emails:
        try:
            validate_email(email)
        except ValidationError:
            raise ValueError(f"{email!r} is not an email address.") from None
    return list(dict.fromkeys(emails))


# --- migrate --dry-run / -o -----------------------------------------------------------------------


def console_models() -> list[type[models.Model]]:
    """The models whose tables better_console creates (from the app registry, not a list)."""
    return [
        model
        for model in apps.get_app_config(APP).get_models()
        if model._meta.managed and not model._meta.proxy
    ]


def migration_names(loader: MigrationLoader | None = None) -> list[str]:
    """better_console's migrations in the order they apply."""
    loader = loader or MigrationLoader(None, ignore_no_migrations=True)
    names: list[str] = []
    for leaf in sorted(key for key in loader.graph.leaf_nodes() if key[0] == APP):
        names += [name for app, name in loader.graph.forwards_plan(leaf) if app == APP]
    return list(dict.fromkeys(names))


def migration_sql(using: str = "default") -> str:
    """The SQL of every better_console migration, safe to run again on a database that has it.

    Collected from Django's schema editor (so it is exactly what ``migrate`` runs), then each
    creating statement is rewritten to skip what exists. When the database keeps Django's
    migration history, the migrations are recorded there too, so that a later ``manage.py
    migrate`` does not try to create the tables again.
    """
    loader = MigrationLoader(connections[using], ignore_no_migrations=True)
    names = migration_names(loader)
    plan = [(loader.graph.nodes[(APP, name)], False) for name in names]
    statements = [make_idempotent(statement) for statement in loader.collect_sql(plan)]
    lines = [
        f"-- better_console tables ({', '.join(m._meta.db_table for m in console_models())}).",
        "-- Idempotent: running it again changes nothing.",
        "BEGIN;",
        *statements,
        *_record_migrations_sql(names),
        "COMMIT;",
    ]
    return "\n".join(lines) + "\n"


def _record_migrations_sql(names: list[str]) -> list[str]:
    if not names:
        return []
    name = MigrationRecorder.Migration._meta.db_table
    table = qn(name)
    values = ", ".join(f"({literal(APP)}, {literal(name)})" for name in names)
    return [
        "--",
        f"-- Record the migrations in {name} (when it exists), as `manage.py migrate` does.",
        "--",
        f"""DO $better$
BEGIN
  IF to_regclass({literal(table)}) IS NOT NULL THEN
    INSERT INTO {table} (app, name, applied)
    SELECT v.app, v.name, now() FROM (VALUES {values}) AS v(app, name)
    WHERE NOT EXISTS (SELECT 1 FROM {table} m WHERE m.app = v.app AND m.name = v.name);
  END IF;
END
$better$;""",
    ]


_REWRITES = [
    (re.compile(r"^CREATE TABLE (?!IF NOT EXISTS )", re.I), "CREATE TABLE IF NOT EXISTS "),
    (
        re.compile(r"^CREATE (UNIQUE )?INDEX (CONCURRENTLY )?(?!IF NOT EXISTS )", re.I),
        r"CREATE \1INDEX \2IF NOT EXISTS ",
    ),
    (re.compile(r"^CREATE SEQUENCE (?!IF NOT EXISTS )", re.I), "CREATE SEQUENCE IF NOT EXISTS "),
    (re.compile(r"^CREATE EXTENSION (?!IF NOT EXISTS )", re.I), "CREATE EXTENSION IF NOT EXISTS "),
    (re.compile(r"^DROP (TABLE|INDEX|SEQUENCE) (?!IF EXISTS )", re.I), r"DROP \1 IF EXISTS "),
    (
        re.compile(r"^(ALTER TABLE \S+ )(ADD COLUMN) (?!IF NOT EXISTS )", re.I),
        r"\1\2 IF NOT EXISTS ",
    ),
    (
        re.compile(r"^(ALTER TABLE \S+ )(DROP COLUMN|DROP CONSTRAINT) (?!IF EXISTS )", re.I),
        r"\1\2 IF EXISTS ",
    ),
]
# PostgreSQL has no ADD CONSTRAINT IF NOT EXISTS: a second run raises one of these, which the
# wrapper ignores (a unique constraint's index counts as a relation: duplicate_table).
_ADD_CONSTRAINT = re.compile(r"^ALTER TABLE \S+ ADD CONSTRAINT ", re.I)


def make_idempotent(statement: str) -> str:
    """``statement`` rewritten so that running it when its object exists is a no-op."""
    text = statement.strip()
    if _ADD_CONSTRAINT.match(text):
        body = text if text.endswith(";") else text + ";"
        return (
            "DO $better$\nBEGIN\n  "
            + body
            + "\nEXCEPTION WHEN duplicate_object OR duplicate_table THEN NULL;\nEND\n$better$;"
        )
    for pattern, replacement in _REWRITES:
        text, count = pattern.subn(replacement, text, count=1)
        if count:
            break
    return text


def output_path(value: str, now: datetime) -> Path:
    """Where ``-o`` writes: the file named, or ``<dir>/<timestamp>_better_console_tables.sql``."""
    path = Path(value).expanduser()
    if path.is_dir() or value.endswith(("/", "\\")) or (not path.suffix and not path.exists()):
        return path / f"{now:%Y%m%d%H%M%S}_{SQL_FILENAME}"
    return path


# --- check ----------------------------------------------------------------------------------------

TABLES = "tables"
PRIVILEGES = "privileges"
SETTINGS = "settings"
SYSTEM = "system checks"
# System-check ids about TOKEN_HASH that the settings results already report (as failures).
_TOKEN_HASH_CHECK_IDS = frozenset({"better_console.E002", "better_console.W001"})


@dataclass
class Result:
    """One line of ``check``: a status (better_core.commands OK/ERROR/WARNING/INFO) and a text."""

    status: str
    message: str
    section: str

    @property
    def failed(self) -> bool:
        return self.status == ERROR


def expected_indexes(model: type[models.Model]) -> list[tuple[tuple[str, ...], bool]]:
    """``(columns, unique)`` of every index the model declares, the primary key aside."""
    meta = model._meta

    def column(name: str) -> str:
        field = meta.get_field(name)
        # Indexes and unique keys name concrete fields, each of which has a column.
        assert isinstance(field, models.Field) and field.column is not None
        return field.column

    found: list[tuple[tuple[str, ...], bool]] = []
    for field in meta.concrete_fields:
        # A concrete field always has a column; the stubs type it as optional.
        if field.primary_key or field.column is None:
            continue
        if field.unique:
            found.append(((field.column,), True))
        elif field.db_index:  # type: ignore[attr-defined]  # set by Field(); not in the stubs
            found.append(((field.column,), False))
    for index in meta.indexes:
        if index.fields:
            columns = tuple(column(name.lstrip("-")) for name in index.fields)
            found.append((columns, False))
    for constraint in meta.constraints:
        if isinstance(constraint, models.UniqueConstraint) and constraint.fields:
            found.append((tuple(column(name) for name in constraint.fields), True))
    for names in meta.unique_together:
        found.append((tuple(column(name) for name in names), True))
    return list(dict.fromkeys(found))


def schema_results(using: str = "default") -> list[Result]:
    """Tables, columns, indexes and the runtime role's privileges, one result each."""
    connection = connections[using]
    results: list[Result] = []
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user, current_schema()")
        role, schema = cursor.fetchone()
        for model in console_models():
            results += _table_results(cursor, connection.ops.quote_name, model, role, schema)
    return results


def _table_results(
    cursor: Any, quote: Any, model: type[models.Model], role: str, schema: str
) -> list[Result]:
    table = model._meta.db_table
    # Quoted, so that to_regclass and has_table_privilege take the name as Django spells it.
    relation = quote(table)
    cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [relation])
    if not cursor.fetchone()[0]:
        return [Result(ERROR, f'table "{table}" not found (schema {schema})', TABLES)]
    cursor.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0 "
        "AND NOT attisdropped",
        [relation],
    )
    present = {row[0] for row in cursor.fetchall()}
    # Every concrete field has a column (the stubs type it as optional).
    expected = [field.column for field in model._meta.concrete_fields if field.column is not None]
    missing = [column for column in expected if column not in present]
    results = [
        Result(ERROR, f"table {table} lacks columns: {', '.join(missing)}", TABLES)
        if missing
        else Result(OK, f"table {table} has all {len(expected)} columns", TABLES)
    ]
    cursor.execute(
        """
        SELECT i.indisunique,
               array(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)
                     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                     ORDER BY k.n)
        FROM pg_index i
        WHERE i.indrelid = to_regclass(%s) AND i.indisvalid AND i.indpred IS NULL
        """,
        [relation],
    )
    indexes = [(tuple(columns), unique) for unique, columns in cursor.fetchall()]
    for columns, unique in expected_indexes(model):
        # A unique index must cover exactly these columns; any index leading with them serves
        # the lookups a plain index is for.
        ok = any(
            (found == columns and found_unique) if unique else found[: len(columns)] == columns
            for found, found_unique in indexes
        )
        label = f"{'unique ' if unique else ''}index on {table}({', '.join(columns)})"
        results.append(
            Result(OK, label, TABLES) if ok else Result(ERROR, f"{label} is missing", TABLES)
        )
    denied = []
    for privilege in TABLE_PRIVILEGES:
        cursor.execute("SELECT has_table_privilege(%s, %s)", [relation, privilege])
        if not cursor.fetchone()[0]:
            denied.append(privilege)
    if denied:
        results.append(Result(ERROR, f"{role} may not {', '.join(denied)} on {table}", PRIVILEGES))
    else:
        results.append(
            Result(OK, f"{role} may {', '.join(TABLE_PRIVILEGES)} on {table}", PRIVILEGES)
        )
    return results


def settings_results() -> list[Result]:
    """TOKEN_HASH set and well-formed (failures), ALLOWED_EMAILS set (a warning at most)."""
    from better_console.conf import ALLOWED_EMAILS_ENV, TOKEN_HASH_ENV, console_settings
    from better_console.email_policy import split_emails

    results = []
    token_hash = console_settings.raw("TOKEN_HASH")
    source = "BETTER_CONSOLE['TOKEN_HASH']"
    if token_hash is None:
        token_hash, source = os.environ.get(TOKEN_HASH_ENV), TOKEN_HASH_ENV
    token_hash = str(token_hash or "").strip()
    if not token_hash:
        results.append(
            Result(
                ERROR,
                f"TOKEN_HASH is not set: run `manage.py better_console init` and set "
                f"{TOKEN_HASH_ENV} to the hash it prints",
                SETTINGS,
            )
        )
    elif not is_valid_token_hash(token_hash):
        results.append(
            Result(
                ERROR,
                f"{source} is not sha256:<64 hex> or <64 hex>: generate one with "
                "`manage.py better_console token generate`",
                SETTINGS,
            )
        )
    else:
        results.append(Result(OK, f"{source} is set and well-formed", SETTINGS))

    magic_link = console_settings.raw("MAGIC_LINK")
    emails = magic_link.get("ALLOWED_EMAILS") if isinstance(magic_link, dict) else None
    source = "BETTER_CONSOLE['MAGIC_LINK']['ALLOWED_EMAILS']"
    if emails is None:
        emails, source = os.environ.get(ALLOWED_EMAILS_ENV, ""), ALLOWED_EMAILS_ENV
    patterns = split_emails(emails) if isinstance(emails, str | list | tuple) else ()
    if not patterns:
        results.append(
            Result(
                WARNING,
                f"ALLOWED_EMAILS is not set ({ALLOWED_EMAILS_ENV}): needed only for magic "
                "link sign-in",
                SETTINGS,
            )
        )
    elif magic_link in (None, False):
        results.append(
            Result(
                WARNING,
                f"{source} is set but magic link sign-in is off: set BETTER_CONSOLE['MAGIC_LINK'] "
                "= {} to use it",
                SETTINGS,
            )
        )
    else:
        results.append(Result(OK, f"{source}: {', '.join(patterns)}", SETTINGS))
    return results


def system_check_results() -> list[Result]:
    """better_console's registered Django system checks; errors fail, warnings do not."""
    results = []
    for message in django_checks.run_checks(tags=[APP]):
        if message.is_silenced() or message.id in _TOKEN_HASH_CHECK_IDS:
            continue
        if message.level >= django_checks.ERROR:
            status = ERROR
        elif message.level >= django_checks.WARNING:
            status = WARNING
        else:
            status = INFO
        text = f"{message.id}: {message.msg}" if message.id else message.msg
        if message.hint:
            text += f" ({message.hint})"
        results.append(Result(status, text, SYSTEM))
    return results or [Result(OK, "BETTER_CONSOLE passes the system checks", SYSTEM)]


# --- token rotate ---------------------------------------------------------------------------------


def revoke_sessions(using: str = "default") -> tuple[int, int] | None:
    """Delete every console session and magic link, so that no stored session outlives a rotation.

    Claimed magic links go too: the session they led to is gone, and a link kept would be one
    more row able to re-open it. Returns ``(sessions, magic_links)`` deleted, or None when the
    tables do not exist (auto-approve installs never create them).
    """
    from better_console.models import ConsoleSession, MagicLink

    connection = connections[using]
    with transaction.atomic(using=using), connection.cursor() as cursor:
        for model in (ConsoleSession, MagicLink):
            cursor.execute(
                "SELECT to_regclass(%s) IS NOT NULL",
                [connection.ops.quote_name(model._meta.db_table)],
            )
            if not cursor.fetchone()[0]:
                return None
        sessions, _ = ConsoleSession.objects.using(using).all().delete()
        links, _ = MagicLink.objects.using(using).all().delete()
    return sessions, links
