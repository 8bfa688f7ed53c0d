"""The database side of the trail: capture triggers on audited tables and the only way to write.

Every audited table carries statement-level ``AFTER INSERT``, ``AFTER UPDATE`` and ``AFTER DELETE``
triggers with transition tables, and a ``BEFORE TRUNCATE`` trigger (``install_sql``). Their
function, ``better_audit_capture()``, is owned by the role that ran ``migrate`` and runs as that
role (``SECURITY DEFINER``): it writes one entry per changed row, whichever connection, role or
statement made the change (the ORM, ``cursor.execute``, ``COPY``, a psql session). It stamps what
the application cannot choose: the time from the database clock, the row's tenant (else the
verified tenant in scope), the images, the changed fields and the record id.

What the database cannot know (the actor, the context's label, reason, correlation id, metadata,
and the enrichment rules: redaction, label, severity, compliance, notify) the ORM paths carry in
the statement itself: ``CARRIER`` (in a WHERE) or ``CARRIED_VALUE`` (in RETURNING) runs
``set_config('better_audit.statement', ..)`` as the statement runs, with a value that starts with
the statement's start time, so it describes that statement alone and no later one. A value that
does not parse fails the statement it rides on, and loses nothing. A change without it is written
with the database's view of who made it: metadata ``{"origin": "database", "db_user": ..,
"application": .., "client_addr": ..}``.

Paths where Python must see each entry (BEFORE_LOG/AFTER_LOG hooks, description functions,
ASYNC_WRITE: ``writer.fold_blocked``) write their entries through ``better_audit_write()``, another
owner-defined function that stamps the time and refuses a tenant other than the verified one in
scope (system mode may write any), and mark their statements with ``better_audit.claim`` (the
transaction's start time and the tables) so the triggers do not write them twice.

The application role has no INSERT on ``audit_logs``: the migration revokes it and row-level
security lets only the functions' owner insert (``writer_policy_sql``), so a later blanket grant
does not give it back. TRUNCATE of an audited table is refused except to its owner, as on the
trail itself (Django's test runner empties tables as the owner).
"""

from __future__ import annotations

import json
from typing import Any

from better_audit import sql
from better_core.roles import literal, qn
from better_tenant.shortcuts import tenancy_installed

CAPTURE_FUNCTION = "better_audit_capture"
TRUNCATE_FUNCTION = "better_audit_refuse_truncate"
WRITE_FUNCTION = "better_audit_write"
STATEMENT_SETTING = "better_audit.statement"
CLAIM_SETTING = "better_audit.claim"
TRIGGER_PREFIX = "better_audit_capture"
WRITER_POLICY = "rls_audit_writer"
OPERATIONS = ("INSERT", "UPDATE", "DELETE")

# What the table accepts (it has no CHECK constraint: see models.AuditLog).
SEVERITIES = ("low", "medium", "high", "critical")
_SEVERITIES = literal("{" + ",".join(SEVERITIES) + "}")
_OPERATIONS = literal("{" + ",".join(OPERATIONS) + "}")
_SEVERITY = f"CASE WHEN ctx ->> 's' = ANY ({_SEVERITIES}) THEN ctx ->> 's' END"
# The columns of an entry the capture trigger fills, in order.
_COLUMNS = ", ".join(qn(c) for c in sql.COLUMNS)


def _scope_sql() -> tuple[str, str]:
    """The verified tenant in scope and whether system mode is verified (better_tenant's)."""
    if not tenancy_installed():
        return "NULL::uuid", "true"
    from better_tenant.sql import CURRENT_TENANT, SYSTEM_FUNCTION

    return CURRENT_TENANT, f"{SYSTEM_FUNCTION}()"


def _changed(before: str, after: str) -> str:
    """The keys of ``before`` whose value ``after`` does not share, in before's key order (as
    ``tables.changed_fields``). Both images come from ``to_jsonb`` of a row of one table, with the
    same keys removed, so no key is one-sided; jsonb equality is JSON equality (``1 = 1.0``,
    ``1 <> true``). A subquery of the INSERT: set up once per statement, run once per row."""
    return (
        f"coalesce((SELECT jsonb_agg(e.key ORDER BY e.n) FROM jsonb_each({before}) "
        f"WITH ORDINALITY e(key, value, n) WHERE {after} -> e.key IS DISTINCT FROM e.value), "
        "'[]'::jsonb)"
    )


def _entries_sql(filtered: bool) -> str:
    """The INSERT of a statement's entries from its rows' images (``olds``, ``news``).

    The images are read from the transition tables beforehand, so this statement names none and
    its plan is kept for the session; the fields every entry shares are plpgsql variables.
    ``filtered``: the enrichment rules drop keys (``dropped``) or keep only some (``kept``); the
    images lose them and ``redacted_fields`` names those they held. Unfiltered statements leave
    that computation out.
    """
    # Old and new images of one row sit at the same position: the transition tables keep the
    # order the rows were changed in (an update whose key changed stays one entry).
    rows = "unnest(olds, news) s(b, a)"
    gone = "'{}'::text[]"
    if filtered:
        # OFFSET 0 keeps the filtered images computed once per row, not once per use.
        rows = (
            "(SELECT s.b - r.gone AS b, s.a - r.gone AS a, r.gone FROM " + rows + " "
            "CROSS JOIN LATERAL (SELECT ARRAY(SELECT k FROM ("
            "SELECT jsonb_object_keys(coalesce(s.b, '{}')) "
            "UNION SELECT jsonb_object_keys(coalesce(s.a, '{}'))) keys(k) "
            'WHERE k = ANY(dropped) OR NOT k = ANY(kept) ORDER BY k COLLATE "C") AS gone) r '
            "OFFSET 0) s"
        )
        gone = "s.gone"
    image = "coalesce(s.a, s.b)"
    return f"""INSERT INTO {qn(sql.TABLE)} ({_COLUMNS})
    SELECT gen_random_uuid(), clock_timestamp(), TG_TABLE_NAME::text, TG_OP, {image} ->> pk,
      actor, CASE WHEN images THEN s.b END, s.a,
      CASE WHEN images AND s.b IS NOT NULL AND s.a IS NOT NULL
        THEN jsonb_build_object('changed_fields', {_changed("s.b", "s.a")}) END,
      label, description, severity, tags, notify, reason, metadata, {gone}, correlation,
      coalesce(({image} ->> tenant_column)::uuid, {_scope_sql()[0]})
    FROM {rows};"""


def _one_entry_sql() -> str:
    """One unfiltered row (most statements): plain values, since setting up a scan of the arrays
    costs more than the row."""
    return f"""b := olds[1];
    a := news[1];
    IF images AND b IS NOT NULL AND a IS NOT NULL THEN
      diff := jsonb_build_object('changed_fields', {_changed("b", "a")});
    END IF;
    INSERT INTO {qn(sql.TABLE)} ({_COLUMNS}) VALUES (
      gen_random_uuid(), clock_timestamp(), TG_TABLE_NAME::text, TG_OP, coalesce(a, b) ->> pk,
      actor, CASE WHEN images THEN b END, a, diff, label, description, severity, tags, notify,
      reason, metadata, '{{}}'::text[], correlation,
      coalesce((coalesce(a, b) ->> tenant_column)::uuid, {_scope_sql()[0]}));"""


def capture_function_sql() -> str:
    """``better_audit_capture()``: TG_ARGV is the key column, the tenant column ('' for none),
    'images' when updates and deletes keep their before-images, and per operation the fields of
    the enrichment rules for changes no statement describes (``writer.installed_fields``)."""
    return f"""CREATE OR REPLACE FUNCTION {CAPTURE_FUNCTION}() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER AS $capture$
DECLARE
  pk text := TG_ARGV[0];
  tenant_column text := TG_ARGV[1];
  images boolean := TG_ARGV[2] = 'images';
  carried text := current_setting({literal(STATEMENT_SETTING)}, true);
  claim text := current_setting({literal(CLAIM_SETTING)}, true);
  stamp text;
  ctx jsonb;
  tags text[] := '{{}}';
  dropped text[];
  kept text[];
  olds jsonb[];
  news jsonb[];
  b jsonb;
  a jsonb;
  diff jsonb;
  actor text;
  label text;
  description text;
  severity text;
  notify boolean;
  reason text;
  metadata jsonb;
  correlation text;
BEGIN
  IF claim <> '' AND starts_with(claim, now()::text || '|')
     AND strpos(claim, '|' || TG_TABLE_NAME || '|') > 0 THEN
    RETURN NULL;
  END IF;
  IF carried <> '' THEN
    stamp := statement_timestamp()::text || '|';
    IF starts_with(carried, stamp) THEN
      ctx := substr(carried, length(stamp) + 1)::jsonb;
      ctx := CASE WHEN ctx ->> 't' = TG_TABLE_NAME THEN ctx -> TG_OP END;
    END IF;
  END IF;
  IF ctx IS NULL THEN
    ctx := coalesce(TG_ARGV[3]::jsonb -> TG_OP, '{{}}')
      || jsonb_build_object('m', jsonb_strip_nulls(jsonb_build_object(
      'origin', 'database', 'db_user', session_user::text,
      'application', nullif(current_setting('application_name', true), ''),
      'client_addr', host(inet_client_addr()))));
  END IF;
  IF ctx ? 'b' THEN images := (ctx ->> 'b')::boolean; END IF;
  IF ctx ? 'c' THEN tags := ARRAY(SELECT jsonb_array_elements_text(ctx -> 'c')); END IF;
  IF ctx ? 'x' THEN dropped := ARRAY(SELECT jsonb_array_elements_text(ctx -> 'x')); END IF;
  IF ctx ? 'i' THEN kept := ARRAY(SELECT jsonb_array_elements_text(ctx -> 'i')); END IF;
  actor := ctx ->> 'a';
  label := ctx ->> 'l';
  description := ctx ->> 'd';
  severity := {_SEVERITY};
  notify := (ctx ->> 'n')::boolean;
  reason := ctx ->> 'r';
  metadata := ctx -> 'm';
  correlation := ctx ->> 'k';
  IF TG_OP <> 'INSERT' THEN
    SELECT array_agg(to_jsonb(o)) INTO olds FROM old_rows o;
    IF images AND ctx ? 'lim' AND cardinality(olds) > (ctx ->> 'lim')::bigint THEN
      images := false;
    END IF;
  END IF;
  IF TG_OP <> 'DELETE' THEN
    SELECT array_agg(to_jsonb(n)) INTO news FROM new_rows n;
  END IF;
  IF olds IS NULL AND news IS NULL THEN
    RETURN NULL;  -- the statement changed no row
  END IF;
  IF dropped IS NOT NULL OR kept IS NOT NULL THEN
    {_entries_sql(True)}
  ELSIF cardinality(coalesce(news, olds)) = 1 THEN
    {_one_entry_sql()}
  ELSE
    {_entries_sql(False)}
  END IF;
  RETURN NULL;
END
$capture$;"""


def truncate_function_sql() -> str:
    from better_audit.integrity import OWNER_CHECK

    return f"""CREATE OR REPLACE FUNCTION {TRUNCATE_FUNCTION}() RETURNS trigger
LANGUAGE plpgsql AS $truncate$
BEGIN
  IF {OWNER_CHECK} THEN
    RETURN NULL;
  END IF;
  RAISE EXCEPTION USING
    MESSAGE = format('better_audit: TRUNCATE of %I is refused: the table is audited, and '
                     'TRUNCATE writes no row-level entries', TG_TABLE_NAME),
    ERRCODE = 'insufficient_privilege',
    HINT = 'DELETE the rows instead (each is then recorded), or run TRUNCATE as the table owner.';
END
$truncate$;"""


def write_function_sql() -> str:
    """``better_audit_write(entries, idempotent)``: the entries of the Python path."""
    scope, system = _scope_sql()
    columns = [c for c in sql.COLUMNS if c != "timestamp"]
    names = ", ".join(qn(c) for c in columns)
    values = ", ".join(f"r.{qn(c)}" for c in columns)
    insert = f"INSERT INTO {qn(sql.TABLE)} ({names}, {qn('timestamp')}) SELECT {values}, stamped"
    rows = f"jsonb_populate_recordset(NULL::{qn(sql.TABLE)}, entries) r"
    return f"""CREATE OR REPLACE FUNCTION {WRITE_FUNCTION}(
  entries jsonb, idempotent boolean, OUT written integer, OUT stamped timestamptz)
LANGUAGE plpgsql SECURITY DEFINER AS $write$
DECLARE
  scope uuid := {scope};
  one jsonb;
BEGIN
  stamped := clock_timestamp();
  IF EXISTS (
    SELECT 1 FROM jsonb_array_elements(entries) e
    WHERE NOT coalesce(e ->> 'operation' = ANY ({_OPERATIONS}), false)
       OR NOT coalesce(e ->> 'severity' = ANY ({_SEVERITIES}), true)
       OR coalesce(e ->> 'table_name', '') = '') THEN
    RAISE EXCEPTION USING
      MESSAGE = 'better_audit: an entry has no table, or an unknown operation or severity',
      ERRCODE = 'check_violation';
  END IF;
  IF NOT {system} AND EXISTS (
    SELECT 1 FROM jsonb_array_elements(entries) e
    WHERE (e ->> 'tenant_id')::uuid IS DISTINCT FROM scope) THEN
    RAISE EXCEPTION USING
      MESSAGE = 'better_audit: an entry names a tenant other than the one in scope',
      ERRCODE = 'insufficient_privilege';
  END IF;
  IF NOT idempotent THEN
    {insert} FROM {rows};
    GET DIAGNOSTICS written = ROW_COUNT;
    RETURN;
  END IF;
  -- Ids already written are skipped one by one: ON CONFLICT would have to read them, and the
  -- owner has no policy to read entries with.
  BEGIN
    {insert} FROM {rows};
    GET DIAGNOSTICS written = ROW_COUNT;
  EXCEPTION WHEN unique_violation THEN
    written := 0;
    FOR one IN SELECT value FROM jsonb_array_elements(entries) LOOP
      BEGIN
        {insert} FROM jsonb_populate_record(NULL::{qn(sql.TABLE)}, one) r;
        written := written + 1;
      EXCEPTION WHEN unique_violation THEN
        NULL;
      END;
    END LOOP;
  END;
END
$write$;"""


def _pin_search_path(signature: str) -> str:
    """Definer functions resolve names in pg_catalog, then the trail's schema, never pg_temp."""
    return (
        "DO $pin$ BEGIN EXECUTE format('ALTER FUNCTION "
        + signature.replace("'", "''")
        + " SET search_path = pg_catalog, %I, pg_temp', current_schema()); END $pin$;"
    )


def functions_sql() -> str:
    """Create or replace the three functions (idempotent)."""
    return "\n".join(
        [
            capture_function_sql(),
            _pin_search_path(f"{CAPTURE_FUNCTION}()"),
            truncate_function_sql(),
            write_function_sql(),
            _pin_search_path(f"{WRITE_FUNCTION}(jsonb, boolean)"),
        ]
    )


def drop_functions_sql() -> str:
    """Backwards: the functions, and with them every capture trigger."""
    return "\n".join(
        [
            f"DROP FUNCTION IF EXISTS {WRITE_FUNCTION}(jsonb, boolean);",
            f"DROP FUNCTION IF EXISTS {CAPTURE_FUNCTION}() CASCADE;",
            f"DROP FUNCTION IF EXISTS {TRUNCATE_FUNCTION}() CASCADE;",
        ]
    )


def trigger_name(operation: str) -> str:
    return f"{TRIGGER_PREFIX}_{operation.lower()}"


def trigger_arguments(
    pk_column: str, tenant_column: str | None, images: bool, fields: dict[str, Any]
) -> tuple[str, ...]:
    """The arguments of a table's capture triggers (as ``pg_trigger.tgargs`` lists them)."""
    return (
        pk_column,
        tenant_column or "",
        "images" if images else "",
        json.dumps(fields, separators=(",", ":"), sort_keys=True),
    )


def install_sql(table: str, arguments: tuple[str, ...]) -> str:
    """The capture and TRUNCATE triggers of one table (replacing any earlier ones)."""
    t = qn(table)
    args = ", ".join(literal(value) for value in arguments)
    transitions = {
        "INSERT": "REFERENCING NEW TABLE AS new_rows",
        "UPDATE": "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows",
        "DELETE": "REFERENCING OLD TABLE AS old_rows",
    }
    parts = [uninstall_sql(table)]
    for operation in OPERATIONS:
        parts.append(
            f"CREATE TRIGGER {trigger_name(operation)} AFTER {operation} ON {t} "
            f"{transitions[operation]} FOR EACH STATEMENT "
            f"EXECUTE FUNCTION {CAPTURE_FUNCTION}({args});"
        )
    parts.append(
        f"CREATE TRIGGER {trigger_name('truncate')} BEFORE TRUNCATE ON {t} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {TRUNCATE_FUNCTION}();"
    )
    return "\n".join(parts)


def uninstall_sql(table: str) -> str:
    t = qn(table)
    return "\n".join(
        f"DROP TRIGGER IF EXISTS {trigger_name(op)} ON {t};" for op in (*OPERATIONS, "truncate")
    )


# --- the statement carrier ----------------------------------------------------------------------


# The statement's context (one parameter: ``carried()``) under the statement's start time, set
# as the statement runs: in a RETURNING list or a WHERE condition, so that the planner adds no
# node for it. The triggers run at the end of the statement, after it.
CARRIED_VALUE = (
    f"pg_catalog.set_config({literal(STATEMENT_SETTING)}, "
    "pg_catalog.statement_timestamp()::pg_catalog.text OPERATOR(pg_catalog.||) '|' "
    "OPERATOR(pg_catalog.||) %s, true)"
)
CARRIER = f"{CARRIED_VALUE} IS NOT NULL"


def carried(table: str, operations: dict[str, dict[str, Any]]) -> str:
    """The carrier's value: per operation, the fields the ORM knows
    (``writer.statement_fields``)."""
    return json.dumps({"t": table, **operations}, separators=(",", ":"), default=str)


def claim_sql() -> str:
    """Mark the tables (one parameter, ``|t1|t2|``) whose entries Python writes itself."""
    return (
        f"SELECT pg_catalog.set_config({literal(CLAIM_SETTING)}, "
        "pg_catalog.now()::pg_catalog.text OPERATOR(pg_catalog.||) %s, true)"
    )


# --- privileges on the trail ------------------------------------------------------------------


def writer_policy_sql(system_role: str | None) -> str:
    """Only the functions' owner inserts into ``audit_logs``; every other role only reads.

    With better_tenant the read policies exist already; without it row-level security is enabled
    here with a read policy for every role, so that the INSERT policy can exclude the others.
    """
    logs = qn(sql.TABLE)
    parts = [
        f"ALTER TABLE {logs} ENABLE ROW LEVEL SECURITY;",
        f"ALTER TABLE {logs} FORCE ROW LEVEL SECURITY;",
        f"DROP POLICY IF EXISTS {qn(sql.INSERT_POLICY)} ON {logs};",
        f"DROP POLICY IF EXISTS {qn(WRITER_POLICY)} ON {logs};",
        f"CREATE POLICY {qn(WRITER_POLICY)} ON {logs} FOR INSERT TO CURRENT_USER "
        "WITH CHECK (true);",
    ]
    if system_role is None:
        parts.append(
            f"CREATE POLICY {qn(sql.READ_POLICY)} ON {logs} FOR SELECT TO PUBLIC USING (true);"
        )
    else:
        from better_tenant.sql import SYSTEM_CHECK

        system = qn(sql.SYSTEM_POLICY)
        parts += [
            f"DROP POLICY IF EXISTS {system} ON {logs};",
            f"CREATE POLICY {system} ON {logs} FOR SELECT TO {qn(system_role)} "
            f"USING ({SYSTEM_CHECK});",
        ]
    return "\n".join(parts)


def drop_writer_policy_sql(system_role: str | None, current_tenant: str | None) -> str:
    """Backwards: the INSERT policy of migration 0001 (with better_tenant), or no RLS at all."""
    logs = qn(sql.TABLE)
    parts = [f"DROP POLICY IF EXISTS {qn(WRITER_POLICY)} ON {logs};"]
    if system_role is None or current_tenant is None:
        parts += [
            f"DROP POLICY IF EXISTS {qn(sql.READ_POLICY)} ON {logs};",
            f"ALTER TABLE {logs} NO FORCE ROW LEVEL SECURITY;",
            f"ALTER TABLE {logs} DISABLE ROW LEVEL SECURITY;",
        ]
        return "\n".join(parts)
    from better_tenant.sql import SYSTEM_CHECK as check

    system = qn(sql.SYSTEM_POLICY)
    parts += [
        f"CREATE POLICY {qn(sql.INSERT_POLICY)} ON {logs} FOR INSERT TO PUBLIC\n"
        f"  WITH CHECK (tenant_id IS NOT DISTINCT FROM {current_tenant});",
        f"DROP POLICY IF EXISTS {system} ON {logs};",
        f"CREATE POLICY {system} ON {logs} FOR ALL TO {qn(system_role)} "
        f"USING ({check}) WITH CHECK ({check});",
    ]
    return "\n".join(parts)


# --- keeping the triggers in step with BETTER_AUDIT["TABLES"] -----------------------------------


def wanted(using: str) -> dict[str, tuple[str, ...]]:
    """Per audited table that ``migrate`` manages on ``using``, the arguments of its triggers."""
    from django.db import router

    from better_audit import tables, writer

    result = {}
    for table, specs in tables.TABLES.items():
        spec = specs[0]
        if spec.model is not None and not router.allow_migrate_model(using, spec.model):
            continue
        result[table] = trigger_arguments(
            spec.pk_column,
            spec.tenant_column,
            not spec.skip_before,
            writer.installed_fields(table),
        )
    return result


def installed(cursor: Any) -> dict[str, tuple[str, ...]] | None:
    """Per table of the search path with capture triggers, their arguments; None when the
    capture function is not installed (better_audit's migrations have not run)."""
    cursor.execute("SELECT to_regprocedure(%s) IS NOT NULL", [f"{CAPTURE_FUNCTION}()"])
    if not cursor.fetchone()[0]:
        return None
    cursor.execute(
        "SELECT c.relname, t.tgargs FROM pg_catalog.pg_trigger t "
        "JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid "
        "WHERE t.tgname = %s AND pg_catalog.pg_table_is_visible(c.oid)",
        [trigger_name("INSERT")],
    )
    return {
        name: tuple(part.decode() for part in bytes(args).split(b"\x00")[:-1])
        for name, args in cursor.fetchall()
    }


def sync(using: str) -> list[str]:
    """Install, refresh or remove capture triggers so they match the configuration.

    Runs after ``migrate`` as the role that ran it (the owner). Returns what changed, as
    ``+table`` (installed or refreshed) and ``-table`` (removed).
    """
    from django.db import connections

    connection = connections[using]
    if connection.vendor != "postgresql":
        return []
    changes = []
    with connection.cursor() as cursor:
        present = installed(cursor)
        if present is None:
            return []  # better_audit's migrations have not run on this database
        configured = wanted(using)
        for table, arguments in configured.items():
            if present.get(table) == arguments:
                continue
            cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [qn(table)])
            if cursor.fetchone()[0]:
                cursor.execute(install_sql(table, arguments))
                changes.append(f"+{table}")
        for table in present:
            if table not in configured:
                cursor.execute(uninstall_sql(table))
                changes.append(f"-{table}")
    return changes


def missing(using: str) -> list[str]:
    """Audited tables of ``using`` whose triggers are absent or out of date."""
    from django.db import connections

    with connections[using].cursor() as cursor:
        present = installed(cursor) or {}
    return sorted(table for table, args in wanted(using).items() if present.get(table) != args)
