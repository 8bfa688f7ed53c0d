"""The SQL better_tenant installs: roles, the trigger function, and per-table RLS policies.

Policy design (measured in ``benchmarks/rls_policy.py``): the tenant policy compares the bare
column to the setting cast once to uuid, ``tenant_id = NULLIF(current_setting(..), '')::uuid``, so
the planner uses an index led by ``tenant_id`` exactly as for an explicit ``WHERE``. System mode is
not an ``OR`` in that policy: it is a second permissive policy granted ``TO`` the system role, which
``run_as_system`` enters with ``SET LOCAL ROLE``. PostgreSQL only applies a policy to roles that
hold the privileges of its target role, so the application role is a NOINHERIT member of the system
role: it may switch to it, but the system policy never applies to its ordinary queries.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from better_core.roles import (  # noqa: F401 - re-exported for the apps and commands
    bootstrap_roles_sql,
    ensure_role_sql,
    grant_privileges_sql,
    literal,
    membership_sql,
    qn,
)

SETTING = "app.current_tenant"
CURRENT_TENANT = f"NULLIF(current_setting('{SETTING}', true), '')::uuid"
TRIGGER_FUNCTION = "set_tenant_id"
TRIGGER_NAME = "set_tenant_id_trigger"
TENANTS_TABLE = "tenants"
TENANTS_READ_POLICY = "rls_tenants_read"
TENANTS_WRITE_POLICY = "rls_tenants_write"


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
  USING (true) WITH CHECK (true);
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


def _rls_sql(table: str, system_role: str, check: str, trigger: str, function: str) -> list[str]:
    """RLS on, the tenant and system policies, the insert trigger and the system role's grants."""
    name = qn(table)
    return [
        f"ALTER TABLE {name} ENABLE ROW LEVEL SECURITY;",
        f"ALTER TABLE {name} FORCE ROW LEVEL SECURITY;",
        f"CREATE POLICY {qn(tenant_policy_name(table))} ON {name} FOR ALL TO PUBLIC\n"
        f"  USING (tenant_id = {CURRENT_TENANT})\n  WITH CHECK ({check});",
        f"CREATE POLICY {qn(system_policy_name(table))} ON {name} FOR ALL "
        f"TO {qn(system_role)}\n  USING (true) WITH CHECK (true);",
        f"CREATE TRIGGER {qn(trigger)} BEFORE INSERT ON {name}\n"
        f"  FOR EACH ROW EXECUTE FUNCTION {function}();",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON {name} TO {qn(system_role)};",
        _grant_owned_sequences_sql(table, system_role),
    ]


def enable_table_sql(spec: TableSpec) -> str:
    table = qn(spec.table)
    parts = _rls_sql(
        spec.table,
        spec.system_role,
        f"tenant_id = {CURRENT_TENANT}",
        TRIGGER_NAME,
        TRIGGER_FUNCTION,
    )
    if spec.pk_column:
        # The target of composite foreign keys; also the index led by tenant_id.
        parts.append(
            f"ALTER TABLE {table} ADD CONSTRAINT {qn(tenant_key_name(spec.table))} "
            f"UNIQUE (tenant_id, {qn(spec.pk_column)});"
        )
    for fk in spec.foreign_keys:
        parts.append(
            f"ALTER TABLE {table} ADD CONSTRAINT {qn(composite_fk_name(spec.table, fk.column))} "
            f"FOREIGN KEY (tenant_id, {qn(fk.column)}) "
            f"REFERENCES {qn(fk.to_table)} (tenant_id, {qn(fk.to_column)}) "
            "DEFERRABLE INITIALLY DEFERRED;"
        )
    return "\n".join(parts)


def disable_table_sql(spec: TableSpec) -> str:
    table = qn(spec.table)
    parts = [
        f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS "
        f"{qn(composite_fk_name(spec.table, fk.column))};"
        for fk in spec.foreign_keys
    ]
    if spec.pk_column:
        parts.append(
            f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {qn(tenant_key_name(spec.table))};"
        )
    parts += [
        f"DROP TRIGGER IF EXISTS {qn(TRIGGER_NAME)} ON {table};",
        f"DROP POLICY IF EXISTS {qn(system_policy_name(spec.table))} ON {table};",
        f"DROP POLICY IF EXISTS {qn(tenant_policy_name(spec.table))} ON {table};",
        f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY;",
        f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY;",
    ]
    return "\n".join(parts)


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
        f"tenant_id IS NOT DISTINCT FROM {CURRENT_TENANT}"
        if untenanted_writes
        else f"tenant_id = {CURRENT_TENANT}"
    )
    rls = _rls_sql(table, system_role, check, OPTIONAL_TRIGGER_NAME, OPTIONAL_TRIGGER_FUNCTION)
    return "\n".join([optional_trigger_function_sql(), *rls])


def disable_optional_table_sql(table: str) -> str:
    name = qn(table)
    return "\n".join(
        [
            f"DROP TRIGGER IF EXISTS {qn(OPTIONAL_TRIGGER_NAME)} ON {name};",
            f"DROP POLICY IF EXISTS {qn(system_policy_name(table))} ON {name};",
            f"DROP POLICY IF EXISTS {qn(tenant_policy_name(table))} ON {name};",
            f"ALTER TABLE {name} NO FORCE ROW LEVEL SECURITY;",
            f"ALTER TABLE {name} DISABLE ROW LEVEL SECURITY;",
        ]
    )
