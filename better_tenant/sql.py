"""The SQL better_tenant installs: roles, the trigger function, and per-table RLS policies.

Policy design (measured in ``benchmarks/rls_policy.py``): the tenant policy compares the bare
column to one value, ``tenant_id = (SELECT better_tenant_current())``, computed once per query
(an InitPlan), so the planner uses an index led by ``tenant_id`` exactly as for an explicit
``WHERE``. In signed mode (the default, "the signed context" below) that function verifies a MAC
bound to the backend and the transaction; in the unsigned opt-out it reads the setting, honoured
only beside the current transaction's stamp (``CURRENT_TENANT_V2``). System mode is not an ``OR``
in that policy: it is a second permissive policy granted ``TO`` the system role, which
``run_as_system`` enters with ``SET LOCAL ROLE``, and which also asks for the signed ``system``
marker. PostgreSQL only applies a policy to roles that hold the privileges of its target role, so
the application role is a NOINHERIT member of the system role: it may switch to it, but the
system policy never applies to its ordinary queries.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

from better_core.roles import (  # noqa: F401 - re-exported for the apps and commands
    bootstrap_roles_sql,
    ensure_role_sql,
    literal,
    membership_sql,
    qn,
)
from better_core.roles import grant_privileges_sql as grant_table_privileges_sql

SETTING = "app.current_tenant"
# Set beside the tenant, in the same statement and also transaction-local: the start time of the
# transaction, which no later transaction on the connection shares. Printed from float8 so that
# neither TimeZone nor DateStyle changes it.
STAMP_SETTING = "app.current_tenant_xact"
TRANSACTION_STAMP = "date_part('epoch', now())::text"
# Up to migration 0002: the setting alone, which a session-level set_config(.., false) carries past
# its transaction into later unscoped work on the connection (and, behind PgBouncer, other clients).
CURRENT_TENANT_V1 = f"NULLIF(current_setting('{SETTING}', true), '')::uuid"
# The tenant only while the stamp names the current transaction; every function in it is stable,
# so the planner still treats it as one parameter and uses the tenant_id index.
CURRENT_TENANT_V2 = (
    f"CASE WHEN current_setting('{STAMP_SETTING}', true) = {TRANSACTION_STAMP} "
    f"THEN {CURRENT_TENANT_V1} END"
)
# From migration 0003: functions that verify the signed context (see "the signed context" below).
CURRENT_FUNCTION = "better_tenant_current"
SYSTEM_FUNCTION = "better_tenant_is_system"
ENTER_FUNCTION = "better_tenant_enter"
CURRENT_TENANT_V3 = f"{CURRENT_FUNCTION}()"
CURRENT_TENANT = CURRENT_TENANT_V3
# In a policy the function runs once per query (an InitPlan) rather than once per row or rescan.
POLICY_TENANT = f"(SELECT {CURRENT_TENANT})"
SYSTEM_CHECK = f"(SELECT {SYSTEM_FUNCTION}())"
# How PostgreSQL prints those two inside a policy (pg_get_expr), which the rewrites look for.
POLICY_TENANT_PRINTED = f"( SELECT {CURRENT_FUNCTION}() AS {CURRENT_FUNCTION})"
SYSTEM_CHECK_PRINTED = f"( SELECT {SYSTEM_FUNCTION}() AS {SYSTEM_FUNCTION})"
TRIGGER_FUNCTION = "set_tenant_id"
TRIGGER_NAME = "set_tenant_id_trigger"
TENANTS_TABLE = "tenants"
TENANTS_READ_POLICY = "rls_tenants_read"
TENANTS_WRITE_POLICY = "rls_tenants_write"


def reads_tenant(expression: str) -> bool:
    """Whether a policy expression reads the tenant in scope (the function, or the old setting)."""
    return CURRENT_FUNCTION in expression or SETTING in expression


def short_name(*parts: str) -> str:
    """An identifier within PostgreSQL's 63-byte limit, stable for the same parts."""
    name = "_".join(parts).replace(".", "_")
    if len(name.encode()) <= 63:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return name.encode()[:54].decode(errors="ignore") + "_" + digest


def tenant_policy_name(table: str) -> str:
    return short_name("rls_tenant", table)


def system_policy_name(table: str) -> str:
    return short_name("rls_system", table)


def tenant_key_name(table: str) -> str:
    return short_name(table, "tenant_key")


def composite_fk_name(table: str, column: str) -> str:
    return short_name(table, column, "tenant_fk")


# --- roles -------------------------------------------------------------------------------------


def ensure_system_role_sql(system_role: str) -> str:
    """Create the NOLOGIN system role if it is missing, with a clear error when that is refused."""
    return ensure_role_sql(
        system_role, "Then run manage.py better_tenant init --app-role <your app role>."
    )


# --- functions and the tenants table ----------------------------------------------------------


def trigger_function_sql() -> str:
    return f"""CREATE OR REPLACE FUNCTION {TRIGGER_FUNCTION}() RETURNS trigger
LANGUAGE plpgsql AS $better$
BEGIN
  IF NEW.tenant_id IS NULL THEN
    NEW.tenant_id := {CURRENT_TENANT};
    IF NEW.tenant_id IS NULL THEN
      RAISE EXCEPTION USING
              MESSAGE = 'better_tenant: no tenant in scope for an insert into ' || TG_TABLE_NAME,
              ERRCODE = 'not_null_violation',
              HINT = 'Insert inside run_as(tenant_id) or a request resolved by TenantMiddleware; '
                     'in run_as_system() set tenant_id explicitly.';
    END IF;
  END IF;
  RETURN NEW;
END
$better$;"""


def drop_trigger_function_sql() -> str:
    return f"DROP FUNCTION IF EXISTS {TRIGGER_FUNCTION}();"


def tenants_table_sql(system_role: str, table: str = TENANTS_TABLE) -> str:
    return f"""ALTER TABLE {qn(table)} ENABLE ROW LEVEL SECURITY;
ALTER TABLE {qn(table)} FORCE ROW LEVEL SECURITY;
CREATE POLICY {qn(TENANTS_READ_POLICY)} ON {qn(table)} FOR SELECT USING (true);
CREATE POLICY {qn(TENANTS_WRITE_POLICY)} ON {qn(table)} FOR ALL TO {qn(system_role)}
  USING ({SYSTEM_CHECK}) WITH CHECK ({SYSTEM_CHECK});
GRANT SELECT, INSERT, UPDATE, DELETE ON {qn(table)} TO {qn(system_role)};"""


def drop_tenants_table_sql(table: str = TENANTS_TABLE) -> str:
    return f"""DROP POLICY IF EXISTS {qn(TENANTS_WRITE_POLICY)} ON {qn(table)};
DROP POLICY IF EXISTS {qn(TENANTS_READ_POLICY)} ON {qn(table)};
ALTER TABLE {qn(table)} NO FORCE ROW LEVEL SECURITY;
ALTER TABLE {qn(table)} DISABLE ROW LEVEL SECURITY;"""


# --- tenant-scoped tables ---------------------------------------------------------------------


@dataclass(frozen=True)
class ForeignKeySpec:
    """A composite foreign key ``(tenant_id, column) -> to_table (tenant_id, to_column)``."""

    column: str
    to_table: str
    to_column: str = "id"


@dataclass(frozen=True)
class TableSpec:
    """What RLS needs to know about one tenant-scoped table."""

    table: str
    system_role: str
    pk_column: str | None = "id"
    foreign_keys: tuple[ForeignKeySpec, ...] = field(default_factory=tuple)


def _rls_sql(
    table: str,
    system_role: str,
    check: str,
    trigger: str | None,
    function: str | None,
    using: str | None = None,
) -> list[str]:
    """RLS on, the tenant and system policies, the insert trigger (if any) and the system role's
    grants. ``using`` defaults to the tenant comparison on ``tenant_id``."""
    name = qn(table)
    parts = [
        f"ALTER TABLE {name} ENABLE ROW LEVEL SECURITY;",
        f"ALTER TABLE {name} FORCE ROW LEVEL SECURITY;",
        f"CREATE POLICY {qn(tenant_policy_name(table))} ON {name} FOR ALL TO PUBLIC\n"
        f"  USING ({using or f'tenant_id = {POLICY_TENANT}'})\n  WITH CHECK ({check});",
        f"CREATE POLICY {qn(system_policy_name(table))} ON {name} FOR ALL "
        f"TO {qn(system_role)}\n  USING ({SYSTEM_CHECK}) WITH CHECK ({SYSTEM_CHECK});",
    ]
    if trigger:
        parts.append(
            f"CREATE TRIGGER {qn(trigger)} BEFORE INSERT ON {name}\n"
            f"  FOR EACH ROW EXECUTE FUNCTION {function}();"
        )
    return [
        *parts,
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON {name} TO {qn(system_role)};",
        _grant_owned_sequences_sql(table, system_role),
    ]


def _drop_rls_sql(table: str, trigger: str | None) -> list[str]:
    """The reverse of ``_rls_sql`` (grants stay: they go with the table)."""
    name = qn(table)
    parts = [f"DROP TRIGGER IF EXISTS {qn(trigger)} ON {name};"] if trigger else []
    return [
        *parts,
        f"DROP POLICY IF EXISTS {qn(system_policy_name(table))} ON {name};",
        f"DROP POLICY IF EXISTS {qn(tenant_policy_name(table))} ON {name};",
        f"ALTER TABLE {name} NO FORCE ROW LEVEL SECURITY;",
        f"ALTER TABLE {name} DISABLE ROW LEVEL SECURITY;",
    ]


def enable_table_sql(spec: TableSpec) -> str:
    parts = _rls_sql(
        spec.table,
        spec.system_role,
        f"tenant_id = {POLICY_TENANT}",
        TRIGGER_NAME,
        TRIGGER_FUNCTION,
    )
    if spec.pk_column:
        parts.append(tenant_key_sql(spec.table, spec.pk_column))
    parts += [composite_fk_sql(spec.table, fk) for fk in spec.foreign_keys]
    return "\n".join(parts)


def tenant_key_sql(table: str, pk_column: str) -> str:
    """The target of composite foreign keys; also the index led by tenant_id."""
    return (
        f"ALTER TABLE {qn(table)} ADD CONSTRAINT {qn(tenant_key_name(table))} "
        f"UNIQUE (tenant_id, {qn(pk_column)});"
    )


def composite_fk_sql(table: str, fk: ForeignKeySpec) -> str:
    """``(tenant_id, column) -> to_table (tenant_id, to_column)``: needs to_table's tenant key."""
    return (
        f"ALTER TABLE {qn(table)} ADD CONSTRAINT {qn(composite_fk_name(table, fk.column))} "
        f"FOREIGN KEY (tenant_id, {qn(fk.column)}) "
        f"REFERENCES {qn(fk.to_table)} (tenant_id, {qn(fk.to_column)}) "
        "DEFERRABLE INITIALLY DEFERRED;"
    )


def guarded_composite_fk_sql(table: str, fk: ForeignKeySpec) -> str:
    """``composite_fk_sql`` between two tables, run only where the database can take it.

    It needs the tenant key of ``to_table`` and both columns of ``table``. Migration state cannot
    promise them: when Django reverts migrations, it computes the state of other apps' tables
    from the order of its plan, not from what is applied, and reverting the split deletion of a
    model restores its tenant column without the key. Where they are missing, the key is left
    out (a later TenantRLS of either table adds it), and where it exists, it is kept.
    """
    source = literal(qn(table))
    return f"""DO $better$
BEGIN
  IF to_regclass({literal(qn(tenant_key_name(fk.to_table)))}) IS NOT NULL
     AND (SELECT count(*) FROM pg_attribute WHERE attrelid = to_regclass({source})
          AND attname IN ('tenant_id', {literal(fk.column)}) AND NOT attisdropped) = 2
     AND NOT EXISTS (SELECT FROM pg_constraint WHERE conrelid = to_regclass({source})
                     AND conname = {literal(composite_fk_name(table, fk.column))}) THEN
    {composite_fk_sql(table, fk)}
  END IF;
END
$better$;"""


def drop_composite_fk_sql(table: str, column: str) -> str:
    name = qn(composite_fk_name(table, column))
    return f"ALTER TABLE {qn(table)} DROP CONSTRAINT IF EXISTS {name};"


def disable_table_sql(spec: TableSpec) -> str:
    table = qn(spec.table)
    parts = [drop_composite_fk_sql(spec.table, fk.column) for fk in spec.foreign_keys]
    if spec.pk_column:
        # CASCADE: with the composite keys that reference it, whichever table's TenantRLS made them.
        parts.append(
            f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {qn(tenant_key_name(spec.table))} "
            "CASCADE;"
        )
    return "\n".join(parts + _drop_rls_sql(spec.table, TRIGGER_NAME))


def _grant_owned_sequences_sql(table: str, role: str) -> str:
    return f"""DO $better$
DECLARE seq regclass;
BEGIN
  FOR seq IN
    SELECT d.objid::regclass FROM pg_depend d
    JOIN pg_class c ON c.oid = d.objid AND c.relkind = 'S'
    WHERE d.refobjid = {literal(qn(table))}::regclass AND d.deptype IN ('a', 'i')
  LOOP
    EXECUTE 'GRANT USAGE, SELECT ON SEQUENCE ' || seq::text
            || ' TO ' || quote_ident({literal(role)});
  END LOOP;
END
$better$;"""


# --- tables of other apps whose rows may belong to no tenant -----------------------------------

OPTIONAL_TRIGGER_FUNCTION = "set_tenant_id_if_scoped"
OPTIONAL_TRIGGER_NAME = "set_tenant_id_if_scoped_trigger"


def optional_trigger_function_sql() -> str:
    """Fill a NULL tenant_id from the scope when there is one; leave it NULL otherwise."""
    return f"""CREATE OR REPLACE FUNCTION {OPTIONAL_TRIGGER_FUNCTION}() RETURNS trigger
LANGUAGE plpgsql AS $better$
BEGIN
  IF NEW.tenant_id IS NULL THEN
    NEW.tenant_id := {CURRENT_TENANT};
  END IF;
  RETURN NEW;
END
$better$;"""


def enable_optional_table_sql(table: str, system_role: str, untenanted_writes: bool) -> str:
    """RLS for a table with a nullable tenant_id (webhook endpoints, mail logs, ...).

    Reads use the index-friendly tenant comparison, so rows without a tenant are read only in
    system mode. Writes must name the tenant in scope; with ``untenanted_writes`` code running
    outside any tenant may also write rows without one (``IS NOT DISTINCT FROM``).
    """
    check = (
        f"tenant_id IS NOT DISTINCT FROM {POLICY_TENANT}"
        if untenanted_writes
        else f"tenant_id = {POLICY_TENANT}"
    )
    rls = _rls_sql(table, system_role, check, OPTIONAL_TRIGGER_NAME, OPTIONAL_TRIGGER_FUNCTION)
    return "\n".join([optional_trigger_function_sql(), *rls])


def disable_optional_table_sql(table: str) -> str:
    return "\n".join(_drop_rls_sql(table, OPTIONAL_TRIGGER_NAME))


# --- automatic many-to-many join tables ---------------------------------------------------------


@dataclass(frozen=True)
class JoinTableSpec:
    """A join table without tenant_id; ``references`` are its foreign keys to tenant tables."""

    table: str
    system_role: str
    references: tuple[ForeignKeySpec, ...]


def join_visibility_sql(spec: JoinTableSpec) -> str:
    """True when every tenant row the link references is visible: their own policies decide.

    The subqueries run under the referenced tables' row-level security, so a tenant sees (and may
    write) only links between rows it can see itself, and system mode sees every link.
    """
    table = qn(spec.table)
    return "\n    AND ".join(
        f"EXISTS (SELECT 1 FROM {qn(ref.to_table)} r "
        f"WHERE r.{qn(ref.to_column)} = {table}.{qn(ref.column)})"
        for ref in spec.references
    )


def enable_join_table_sql(spec: JoinTableSpec) -> str:
    visible = join_visibility_sql(spec)
    return "\n".join(_rls_sql(spec.table, spec.system_role, visible, None, None, using=visible))


def disable_join_table_sql(table: str) -> str:
    return "\n".join(_drop_rls_sql(table, None))


# --- the scope's settings ----------------------------------------------------------------------


def scope_settings_sql(tenant: str) -> str:
    """The select list that sets the tenant (an SQL expression) and the transaction's stamp.

    One statement, both transaction-local: the stamp costs no round trip of its own.
    """
    return (
        f"set_config('{SETTING}', {tenant}, true), "
        f"set_config('{STAMP_SETTING}', {TRANSACTION_STAMP}, true)"
    )


def rewrite_current_tenant_sql(
    old: str, new: str, in_policies: str | None = None, printed_in_policies: str | None = None
) -> str:
    """Make every policy and column default that reads the tenant through ``old`` use ``new``
    (``in_policies`` instead of ``new`` in policies, where a subquery may stand; in policies
    ``printed_in_policies``, how PostgreSQL prints it there, stands for ``old``).

    Covers the schemas on the search path, whichever app created the policy (TenantModel tables,
    EnableTenantRLS and OptionalTenantRLS tables, the audit log). PostgreSQL prints ``old`` itself
    (as a scratch table's column default), so the text searched for is exactly how this server
    prints it inside a policy (less the line breaks its pretty-printer puts around a CASE, whose
    preceding space it also drops, hence the space and parentheses around the replacement). When
    ``new`` wraps ``old``, parts already written with ``new`` are left alone, so running it twice
    changes nothing.
    """
    replacement = literal(f" ({new})")
    policy_replacement = replacement if in_policies is None else literal(f" {in_policies}")
    printed = literal(printed_in_policies) if printed_in_policies else "NULL"
    schemas = "SELECT n.oid FROM pg_namespace n WHERE n.nspname = ANY (current_schemas(false))"
    return f"""DO $rewrite$
DECLARE
  old_text text;
  new_text text;
  policy_old text;
  done text := chr(1);
  item record;
  qual text;
  checked text;
BEGIN
  CREATE TEMP TABLE better_tenant_expression (old uuid DEFAULT {old}, new uuid DEFAULT {new});
  SELECT btrim(max(pg_get_expr(d.adbin, d.adrelid)) FILTER (WHERE d.adnum = 1), E' \\n'),
         btrim(max(pg_get_expr(d.adbin, d.adrelid)) FILTER (WHERE d.adnum = 2), E' \\n')
    INTO old_text, new_text
    FROM pg_attrdef d WHERE d.adrelid = 'pg_temp.better_tenant_expression'::regclass;
  DROP TABLE pg_temp.better_tenant_expression;
  IF strpos(new_text, old_text) = 0 THEN
    done := NULL;
  END IF;
  policy_old := coalesce({printed}, old_text);
  FOR item IN
    SELECT p.polname, p.polrelid::regclass AS tbl,
           pg_get_expr(p.polqual, p.polrelid) AS qual,
           pg_get_expr(p.polwithcheck, p.polrelid) AS checked
    FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
    WHERE c.relnamespace IN ({schemas})
  LOOP
    qual := item.qual;
    checked := item.checked;
    IF done IS NOT NULL THEN
      qual := replace(qual, new_text, done);
      checked := replace(checked, new_text, done);
    END IF;
    CONTINUE WHEN strpos(coalesce(qual, ''), policy_old) = 0
              AND strpos(coalesce(checked, ''), policy_old) = 0;
    qual := replace(qual, policy_old, {policy_replacement});
    checked := replace(checked, policy_old, {policy_replacement});
    IF done IS NOT NULL THEN
      qual := replace(qual, done, new_text);
      checked := replace(checked, done, new_text);
    END IF;
    EXECUTE format('ALTER POLICY %I ON %s', item.polname, item.tbl)
            || coalesce(' USING (' || qual || ')', '')
            || coalesce(' WITH CHECK (' || checked || ')', '');
  END LOOP;
  FOR item IN
    SELECT d.adrelid::regclass AS tbl, a.attname, pg_get_expr(d.adbin, d.adrelid) AS qual
    FROM pg_attrdef d
    JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
    JOIN pg_class c ON c.oid = d.adrelid
    WHERE a.attgenerated = '' AND c.relnamespace IN ({schemas})
  LOOP
    qual := item.qual;
    IF done IS NOT NULL THEN
      qual := replace(qual, new_text, done);
    END IF;
    CONTINUE WHEN strpos(qual, old_text) = 0;
    qual := replace(qual, old_text, {replacement});
    IF done IS NOT NULL THEN
      qual := replace(qual, done, new_text);
    END IF;
    EXECUTE format('ALTER TABLE %s ALTER COLUMN %I SET DEFAULT ', item.tbl, item.attname) || qual;
  END LOOP;
END
$rewrite$;"""


def trigger_functions_sql(current_tenant: str) -> str:
    """``set_tenant_id()`` and, where installed, ``set_tenant_id_if_scoped()`` reading the tenant
    through ``current_tenant``."""
    required = trigger_function_sql().replace(CURRENT_TENANT, current_tenant)
    optional = optional_trigger_function_sql().replace(CURRENT_TENANT, current_tenant)
    return f"""{required}
DO $optional$
BEGIN
  IF to_regprocedure({literal(OPTIONAL_TRIGGER_FUNCTION + "()")}) IS NOT NULL THEN
    EXECUTE {literal(optional)};
  END IF;
END
$optional$;"""


# --- the tenants table: one's own row, and an identifier lookup for the middleware ------------

TENANTS_OWNER_POLICY = "rls_tenants_owner"
LOOKUP_FUNCTION = "better_tenant_lookup"
LOOKUP_SIGNATURE = f"{LOOKUP_FUNCTION}(text)"
# A canonical UUID (what better_tenant.lookup passes for an id) names a tenant by id.
_UUID_PATTERN = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


def tenants_visibility_sql(table: str = TENANTS_TABLE) -> str:
    """A tenant reads only its own row of ``table``; ids are resolved by ``better_tenant_lookup``.

    The function runs as its owner, the role running this migration, which FORCE ROW LEVEL
    SECURITY subjects to the policies too: the owner policy lets it (and only it) read every row.
    Its search_path is fixed to pg_catalog and the table is named with its schema, so nothing the
    caller creates is looked up; identifiers are compared with ``=`` only, never as patterns, and
    only the id comes back. EXECUTE is revoked from PUBLIC and granted to the roles that may read
    the table today; ``better_tenant init`` grants it to the application role.
    """
    name = qn(table)
    return f"""CREATE POLICY {qn(TENANTS_OWNER_POLICY)} ON {name} FOR SELECT TO CURRENT_USER
  USING (true);
ALTER POLICY {qn(TENANTS_READ_POLICY)} ON {name} USING (id = {POLICY_TENANT});
DO $lookup$
DECLARE
  target text := (SELECT format('%I.%I', n.nspname, c.relname)
                  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE c.oid = {literal(name)}::regclass);
BEGIN
  EXECUTE format($create$
CREATE FUNCTION {LOOKUP_FUNCTION}(identifier text) RETURNS uuid
LANGUAGE plpgsql STABLE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $body$
BEGIN
  IF identifier ~ '{_UUID_PATTERN}' THEN
    RETURN (SELECT t.id FROM %1$s AS t WHERE t.id = identifier::uuid);
  END IF;
  RETURN (SELECT t.id FROM %1$s AS t WHERE t.slug = identifier);
END
$body$$create$, target);
END
$lookup$;
REVOKE ALL ON FUNCTION {LOOKUP_SIGNATURE} FROM PUBLIC;
DO $lookup$
DECLARE
  grantee text;
BEGIN
  FOR grantee IN
    SELECT DISTINCT quote_ident(pg_get_userbyid(a.grantee))
    FROM pg_class c, aclexplode(c.relacl) a
    WHERE c.oid = {literal(name)}::regclass AND a.privilege_type = 'SELECT'
      AND a.grantee NOT IN (0, c.relowner)
  LOOP
    EXECUTE 'GRANT EXECUTE ON FUNCTION {LOOKUP_SIGNATURE} TO ' || grantee;
  END LOOP;
END
$lookup$;"""


def drop_tenants_visibility_sql(table: str = TENANTS_TABLE) -> str:
    """Every role reads every tenant again, as before migration 0002."""
    name = qn(table)
    return f"""DROP FUNCTION IF EXISTS {LOOKUP_SIGNATURE};
ALTER POLICY {qn(TENANTS_READ_POLICY)} ON {name} USING (true);
DROP POLICY IF EXISTS {qn(TENANTS_OWNER_POLICY)} ON {name};"""


def grant_lookup_sql(schema: str, *roles: str) -> str:
    """EXECUTE on the lookup function for ``roles``, once a migration has created it."""
    function = literal(f"{qn(schema)}.{LOOKUP_SIGNATURE}")
    targets = ", ".join(qn(role) for role in roles)
    return f"""DO $lookup$
BEGIN
  IF to_regprocedure({function}) IS NOT NULL THEN
    EXECUTE 'GRANT EXECUTE ON FUNCTION ' || to_regprocedure({function})::text
            || ' TO ' || {literal(targets)};
  END IF;
END
$lookup$;"""


def grant_privileges_sql(
    owner: str | None, app: str, system_role: str, schema: str = "public"
) -> str:
    """Table DML (never TRUNCATE) and sequence use for the app and system roles, and EXECUTE on
    the tenant lookup function (see ``better_core.roles.grant_privileges_sql``)."""
    return "\n".join(
        [
            grant_table_privileges_sql(owner, app, system_role, schema),
            grant_lookup_sql(schema, app, system_role),
            revoke_keys_sql(),
        ]
    )


# --- the signed context ------------------------------------------------------------------------
#
# A setting any SQL can write cannot decide which tenant's rows a statement sees: an injected
# ``set_config`` would name another tenant. In signed mode the setting holds the target (a tenant
# id or a marker such as ``system``) and a MAC (``_mac_sql``) over the target, the backend's pid
# and the transaction's start. Only ``better_tenant_enter()`` writes such a value, and only for a
# proof the application signed with the same key (``better_tenant.keys``). The functions policies
# call run as the owner (SECURITY DEFINER, every name qualified) to read the key; they return
# the target only while the MAC matches this backend and this transaction, so a value copied from
# another backend or an earlier transaction reads as no tenant. Comparisons run in constant time
# (``_mac_checks``).
#
# What costs is counted in instructions (callgrind, PostgreSQL 15): one digest is about as much as
# the rest of a check, and every function call in an expression is set up again in each
# transaction, so the checks use one digest per MAC, read the key once per MAC, and measure
# strings in bytes.
#
# The 128-bit keys live in owner-only sequences, two per key (``pg_sequence_last_value`` is a
# plain function call: a table would cost a query, its plan and executor, on every statement,
# which measured as much as the rest of the check together).

KEY_SLOTS = (1, 2)
#: How far (seconds) a proof's time may be from the database clock: its signing to its use.
PROOF_MAX_AGE = 300
#: The length of a MAC in bytes (64 hex digits in a proof or a context).
MAC_BYTES = 32
SYSTEM_TARGET = "system"
# What each MAC covers starts with a label, so a proof can never pass for a context value.
PROOF_LABEL = "better_tenant.enter"
CONTEXT_LABEL = "better_tenant.context"
HOLDS_FUNCTION = "better_tenant_holds"
# A target is a tenant id or a marker: "system", or another app's privileged path.
MARKER_PATTERN = "^[a-z][a-z0-9_]{0,62}$"
# The functions run as the owner. Every name in their bodies (function, operator, type) is
# qualified with pg_catalog, so no search_path an attacker sets can put another object in its
# place; a fixed search_path (SET on the function) would do the same at the price of saving and
# restoring the settings on every call, an eighth of a check.
_DEFINER = "SECURITY DEFINER"
# Shape checks with translate(): a regular expression costs more than the whole MAC check.
_HEX = "0123456789abcdef"
_LOWER = "abcdefghijklmnopqrstuvwxyz"
_MARKER_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_"


def key_sequences(slot: int) -> tuple[str, str]:
    """The two sequences holding the high and low 8 bytes of the key in ``slot``."""
    return f"better_tenant_key_{slot}_hi", f"better_tenant_key_{slot}_lo"


KEY_SEQUENCES = tuple(name for slot in KEY_SLOTS for name in key_sequences(slot))


def _f(name: str, *args: str) -> str:
    """SQL: a call of the built-in function ``name``."""
    return f"pg_catalog.{name}({', '.join(args)})"


def _op(left: str, operator: str, right: str) -> str:
    """SQL: ``left operator right`` with the built-in operator, in parentheses: written as
    ``OPERATOR(..)`` every operator binds alike, whatever its own precedence."""
    return f"({left} OPERATOR(pg_catalog.{operator}) {right})"


def _cat(*parts: str) -> str:
    """SQL: ``parts`` concatenated (text or bytea)."""
    return "(" + " OPERATOR(pg_catalog.||) ".join(parts) + ")"


def _only(text: str, alphabet: str, shape: str) -> str:
    """SQL: ``text`` is ``shape`` once every character of ``alphabet`` is read as ``x``."""
    every = _f("translate", text, f"'{alphabet}'", f"'{'x' * len(alphabet)}'")
    return _op(every, "=", shape)


def _mac_sql(slot: int, message: str) -> str:
    """The MAC of ``message`` (bytea) under the key in ``slot``: its SHA-512 after the key,
    truncated to 256 bits (``keys.mac``); NULL when the slot is empty. ``%N$s`` are the key
    sequences' oids.

    A keyed hash of this form resists length extension only because the truncation withholds
    half of SHA-512's state; it costs one digest where HMAC takes two, and each digest costs
    PostgreSQL as much as the rest of a check together.
    """
    hi, lo = (KEY_SEQUENCES.index(name) + 1 for name in key_sequences(slot))
    key = _cat(
        *(
            _f(
                "int8send",
                _f("pg_sequence_last_value", f"%{n}$s::pg_catalog.oid::pg_catalog.regclass"),
            )
            for n in (hi, lo)
        )
    )
    return _f("substr", _f("sha512", _cat(key, message)), "1", str(MAC_BYTES))


def _hex(value: str) -> str:
    return _f("encode", value, "'hex'")


def _label(text: str) -> str:
    return f"'\\x{text.encode().hex()}'::pg_catalog.bytea"


def _context_message(target: str) -> str:
    """What a context MAC covers: ``target`` (SQL text), this backend, this transaction's start
    (binary, so no setting such as DateStyle changes it)."""
    return _cat(
        _label(CONTEXT_LABEL + "|"),
        _f("convert_to", target, "'UTF8'"),
        _f("int4send", _f("pg_backend_pid")),
        _f("timestamptz_send", _f("now")),
    )


def _mac_checks(
    target_is: str | None, message: str, given: str, accepted: Callable[[int], str]
) -> str:
    """plpgsql: run ``accepted(slot)`` when ``target_is`` holds (if given) and ``given`` (hex
    text) is the MAC of ``message`` under a live key; the second key is tried only when the first
    fails.

    Hex text against hex text, so a ``given`` that is not hex needs no check before it is read.
    The comparison runs in constant time: first the two values' 64-bit hashes (one machine word
    each), then the texts themselves, which are compared only when the hashes match, so the
    time a wrong guess takes says nothing of how much of it was right. (Hashing both sides with
    ``sha256()`` would cost two digests per check, twice the MAC itself.)
    """
    hashes = _op(_f("hashtextextended", "expected", "0"), "=", _f("hashtextextended", given, "0"))
    checks = "\n".join(
        f"    expected := {_hex(_mac_sql(slot, message))};\n"
        f"    IF {hashes}\n"
        f"       AND {_op('expected', '=', given)} THEN\n{accepted(slot)}\n    END IF;"
        for slot in KEY_SLOTS
    )
    return checks if target_is is None else f"  IF {target_is} THEN\n{checks}\n  END IF;"


def _verifier_sql(
    signature: str, returns: str, target_is: str, target: str, given: str, result: str, miss: str
) -> str:
    """A function returning ``result`` while the setting holds a context MAC'd for this backend
    and transaction whose target passes ``target_is`` and is ``target``, with the MAC
    ``given``; else ``miss``.

    The MAC is checked before anything is read from the value: only ``better_tenant_enter()``
    writes a value that passes, and only for a well-formed target, so the value's shape needs no
    check of its own. As few plpgsql statements and expression nodes as possible: each expression
    is set up again in every transaction, and the policies call this once per query.
    """
    checks = _mac_checks(
        target_is, _context_message(target), given, lambda slot: f"      RETURN {result};"
    )
    return f"""CREATE OR REPLACE FUNCTION {signature} RETURNS {returns}
LANGUAGE plpgsql STABLE {_DEFINER} AS $body$
DECLARE
  context pg_catalog.text := {_f("current_setting", f"'{SETTING}'", "true")};
  expected pg_catalog.text;
BEGIN
{checks}
  RETURN {miss};
END
$body$;"""


def _tail(value: str) -> str:
    """SQL: the MAC at the end of ``value`` (the text after the last ``|``, 64 characters).

    Lengths and positions in bytes: the character functions would count the characters of the
    whole value on every call. A value the key signed is ASCII, where the two agree; any other
    value fails its MAC whatever is read from it.
    """
    start = _op(_f("octet_length", value), "-", str(2 * MAC_BYTES - 1))
    return _f("substr", value, start, str(2 * MAC_BYTES))


def _head(value: str) -> str:
    """SQL: what ``value`` holds before its ``|`` and MAC (see ``_tail``), empty when short."""
    length = _op(_f("octet_length", value), "-", str(2 * MAC_BYTES + 1))
    return _f("substr", value, "1", f"GREATEST({length}, 0)")


def _enter_sql() -> str:
    """``better_tenant_enter(proof)``: the proof's MAC is checked first, so the accepted path reads
    only what the key holder signed (a well-formed target and time); why a proof was refused is
    worked out only when it was."""
    refused = "ERRCODE = 'insufficient_privilege'"
    uuid_shape = _only("target", _HEX, "'xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx'")
    length = _f("length", "target")
    marker_shape = " AND ".join(
        [
            _op(length, ">=", "1"),
            _op(length, "<=", "63"),
            _only(_f("left", "target", "1"), _LOWER, "'x'"),
            _only("target", _MARKER_CHARS, _f("repeat", "'x'", length)),
        ]
    )
    issued_length = _f("length", "issued")
    shape = " AND ".join(
        [
            f"({uuid_shape} OR ({marker_shape}))",
            _op(issued_length, ">=", "1"),
            _op(issued_length, "<=", "12"),
            _only("issued", "0123456789", _f("repeat", "'x'", issued_length)),
            _only("mac", _HEX, f"'{'x' * 2 * MAC_BYTES}'"),
            _op("proof", "=", _cat("target", "'|'", "issued", "'|'", "mac")),
        ]
    )
    issued = _f("split_part", "signed", "'|'", "2")
    # date_part() is float8 arithmetic; extract() would be numeric.
    age = _op(_f("date_part", "'epoch'", _f("clock_timestamp")), "-", f"{issued}::pg_catalog.int8")
    fresh = _op(_f("abs", age), "<=", str(PROOF_MAX_AGE))
    stale = _cat(
        "'better_tenant: context proof signed '",
        issued,
        f"', more than {PROOF_MAX_AGE} s from the database clock'",
    )

    setting, bar = f"'{SETTING}'", "'|'"

    def accepted(slot: int) -> str:
        # The context is MAC'd under the key that signed the proof.
        context = _cat("target", "'|'", _hex(_mac_sql(slot, _context_message("target"))))
        return (
            f"      IF {fresh} THEN\n"
            f"        target := {_f('split_part', 'signed', bar, '1')};\n"
            f"        expected := {_f('set_config', setting, context, 'true')};\n"
            "        RETURN target;\n"
            "      END IF;\n"
            f"      RAISE EXCEPTION USING {refused},\n"
            f"        MESSAGE = {stale},\n"
            "        HINT = 'Keep the application and database clocks in sync (NTP).';"
        )

    # No check of the proof's shape first: what the MAC covers is read as signed, and anything
    # else fails the MAC.
    checks = _mac_checks(
        None,
        _f("convert_to", _cat(f"'{PROOF_LABEL}|'", "signed"), "'UTF8'"),
        "given",
        accepted,
    )
    return f"""CREATE OR REPLACE FUNCTION {ENTER_FUNCTION}(proof text) RETURNS text
LANGUAGE plpgsql VOLATILE {_DEFINER} AS $body$
DECLARE
  signed pg_catalog.text := {_head("proof")};
  given pg_catalog.text := {_tail("proof")};
  expected pg_catalog.text;
  target pg_catalog.text;
  issued pg_catalog.text;
  mac pg_catalog.text;
BEGIN
{checks}
  target := {_f("split_part", "proof", "'|'", "1")};
  issued := {_f("split_part", "proof", "'|'", "2")};
  mac := {_f("split_part", "proof", "'|'", "3")};
  IF NOT coalesce({shape}, false) THEN
    RAISE EXCEPTION USING {refused},
      MESSAGE = 'better_tenant: malformed context proof';
  END IF;
  RAISE EXCEPTION USING {refused},
    MESSAGE = 'better_tenant: context proof refused: no key installed in the database matches',
    HINT = 'Run manage.py better_tenant check, then better_tenant init as the owner to install '
           'BETTER_TENANT[''CONTEXT_KEY''].';
END
$body$;"""


def context_functions_sql(signed: bool) -> str:
    """The functions policies call, with the key sequences they read in signed mode.

    Signed: ``better_tenant_current()``, ``better_tenant_is_system()`` and
    ``better_tenant_holds(marker)`` (another app's privileged path) verify the context MAC;
    ``better_tenant_enter(proof)`` checks a proof and writes the context. Unsigned (the opt-out):
    the first reads the plain setting beside the transaction's stamp, as migration 0002 did,
    ``is_system()`` and ``holds(marker)`` are true (the role alone decides), and there is no
    ``enter``. Idempotent; the sequences go in the current schema.
    """
    if not signed:
        return f"""CREATE OR REPLACE FUNCTION {CURRENT_FUNCTION}() RETURNS uuid
LANGUAGE sql STABLE SECURITY INVOKER AS $body$ SELECT {CURRENT_TENANT_V2} $body$;
CREATE OR REPLACE FUNCTION {SYSTEM_FUNCTION}() RETURNS boolean
LANGUAGE sql STABLE SECURITY INVOKER AS $body$ SELECT true $body$;
CREATE OR REPLACE FUNCTION {HOLDS_FUNCTION}(marker text) RETURNS boolean
LANGUAGE sql STABLE SECURITY INVOKER AS $body$ SELECT true $body$;
DROP FUNCTION IF EXISTS {ENTER_FUNCTION}(text);"""
    # A tenant id is the only target 36 characters long with a hyphen: markers have none. Its
    # context has a fixed length, so its MAC a fixed place.
    tenant_length = 36 + 1 + 2 * MAC_BYTES
    length = _f("octet_length", "context")
    current = _verifier_sql(
        f"{CURRENT_FUNCTION}()",
        "uuid",
        f"{_op(length, '=', str(tenant_length))} AND "
        + _op(_f("substr", "context", "9", "1"), "=", "'-'"),
        _f("substr", "context", "1", "36"),
        _f("substr", "context", "38", str(2 * MAC_BYTES)),
        f"{_f('substr', 'context', '1', '36')}::pg_catalog.uuid",
        "NULL",
    )
    system_prefix = f"'{SYSTEM_TARGET}|'"
    system = _verifier_sql(
        f"{SYSTEM_FUNCTION}()",
        "boolean",
        f"{_f('starts_with', 'context', system_prefix)} AND "
        + _op(length, "=", str(len(SYSTEM_TARGET) + 1 + 2 * MAC_BYTES)),
        f"'{SYSTEM_TARGET}'",
        _f("substr", "context", str(len(SYSTEM_TARGET) + 2), str(2 * MAC_BYTES)),
        "true",
        "false",
    )
    bar = "'|'"
    holds = _verifier_sql(
        f"{HOLDS_FUNCTION}(marker text)",
        "boolean",
        f"{_f('starts_with', 'context', _cat('marker', bar))} AND "
        + _op(length, "=", _op(_f("octet_length", "marker"), "+", str(1 + 2 * MAC_BYTES))),
        "marker",
        _tail("context"),
        "true",
        "false",
    )
    names = ", ".join(literal(name) for name in KEY_SEQUENCES)
    # The functions name the sequences by oid: no search_path, no quoting, found as created.
    return f"""DO $keys$
DECLARE
  name text;
BEGIN
  FOREACH name IN ARRAY ARRAY[{names}] LOOP
    EXECUTE format('CREATE SEQUENCE IF NOT EXISTS %I AS bigint MINVALUE %s MAXVALUE %s NO CYCLE',
                   name, -9223372036854775808, 9223372036854775807);
  END LOOP;
END
$keys$;
{revoke_keys_sql()}
DO $signed$
DECLARE
  oids text[] := ARRAY(SELECT to_regclass(quote_ident(current_schema()) || '.' || name)::oid::text
                       FROM unnest(ARRAY[{names}]) WITH ORDINALITY AS n(name, i) ORDER BY i);
BEGIN
  EXECUTE format($create$
{current}
{system}
{holds}
{_enter_sql()}$create$, VARIADIC oids);
END
$signed$;"""


def revoke_keys_sql() -> str:
    """No role but the owner may touch the key sequences (if they exist), whatever a grant gave."""
    names = ", ".join(literal(name) for name in KEY_SEQUENCES)
    return f"""DO $revoke$
DECLARE
  item record;
BEGIN
  FOR item IN
    SELECT DISTINCT c.oid::regclass AS seq,
           CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END
             AS grantee
    FROM pg_class c, aclexplode(c.relacl) a
    WHERE c.oid IN (SELECT to_regclass(quote_ident(current_schema()) || '.' || n)
                    FROM unnest(ARRAY[{names}]) AS n)
      AND a.grantee <> c.relowner
  LOOP
    EXECUTE format('REVOKE ALL ON SEQUENCE %s FROM %s', item.seq, item.grantee);
  END LOOP;
END
$revoke$;"""


def drop_context_functions_sql() -> str:
    return "\n".join(
        [f"DROP FUNCTION IF EXISTS {ENTER_FUNCTION}(text);"]
        + [f"DROP SEQUENCE IF EXISTS {qn(name)};" for name in KEY_SEQUENCES]
    )


def holds_sql(marker: str) -> str:
    """A policy condition: the transaction entered ``marker`` with a proof (see ``holding``)."""
    return f"(SELECT {HOLDS_FUNCTION}({literal(marker)}))"


def rewrite_role_policies_sql(role: str, old: str, new: str) -> str:
    """Make every policy for ``role`` alone whose USING is ``old`` use ``new`` (and WITH CHECK)."""
    schemas = "SELECT n.oid FROM pg_namespace n WHERE n.nspname = ANY (current_schemas(false))"
    return f"""DO $rewrite$
DECLARE
  item record;
BEGIN
  FOR item IN
    SELECT p.polname, p.polcmd, p.polrelid::regclass AS tbl
    FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
    WHERE c.relnamespace IN ({schemas})
      AND p.polroles = ARRAY[(SELECT oid FROM pg_roles WHERE rolname = {literal(role)})]
      AND pg_get_expr(p.polqual, p.polrelid) = {literal(old)}
  LOOP
    EXECUTE format('ALTER POLICY %I ON %s USING (%s)', item.polname, item.tbl, {literal(new)})
            || CASE WHEN item.polcmd IN ('*', 'a', 'w')
                    THEN format(' WITH CHECK (%s)', {literal(new)}) ELSE '' END;
  END LOOP;
END
$rewrite$;"""


def revoke_temporary_sql() -> str:
    """No temporary objects for roles not granted them: the temporary schema is searched first
    for tables, so a temp view left on a connection would run in a later request. The role
    running this (the owner, who runs migrations that use a scratch temp table) keeps the
    privilege. Needs the database's owner or a superuser."""
    return """DO $temporary$
BEGIN
  EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
  EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO CURRENT_USER', current_database());
END
$temporary$;"""
