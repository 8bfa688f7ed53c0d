"""The SQL better_audit installs: row-level security on ``audit_logs``, and its columns.

Policy design, when better_tenant is installed:

- ``rls_audit_read`` (SELECT): ``tenant_id = NULLIF(current_setting(..), '')::uuid``, the same
  index-friendly comparison as the tenant tables, so a tenant reads only its own trail and rows
  without a tenant are read only in system mode.
- ``rls_audit_insert`` (INSERT): ``tenant_id IS NOT DISTINCT FROM`` the tenant in scope, so changes
  made outside any tenant write rows with a NULL tenant and a tenant can never write into another
  tenant's trail. Migration 0004 replaces it: only the owner's functions insert
  (``better_audit.trail``), and the system role's policy becomes read-only.
- no UPDATE or DELETE policy for the application role: under FORCE row-level security its UPDATE
  and DELETE statements match no row, so the trail is append-only for it.
- ``rls_system_audit_logs`` (ALL) for the system role that ``run_as_system()`` switches to: reads
  every trail. It does not purge: the append-only triggers (``better_audit.integrity``) refuse
  DELETE in every role but the audit admin role (``BETTER_AUDIT["INTEGRITY"]["ADMIN_ROLE"]``),
  which ``integrity.purge()`` switches to and whose own policies let it read and delete.
"""

from __future__ import annotations

from better_core.roles import qn

TABLE = "audit_logs"
READ_POLICY = "rls_audit_read"
INSERT_POLICY = "rls_audit_insert"
SYSTEM_POLICY = "rls_system_audit_logs"

# The stored columns, in the order of the canonical form (better_audit.integrity).
COLUMNS = (
    "id",
    "timestamp",
    "table_name",
    "operation",
    "record_id",
    "actor_id",
    "before_data",
    "after_data",
    "diff",
    "label",
    "description",
    "severity",
    "compliance",
    "notify",
    "reason",
    "metadata",
    "redacted_fields",
    "correlation_id",
    "tenant_id",
)


def enable_rls_sql(
    system_role: str, current_tenant: str, system_check: str, table: str = TABLE
) -> str:
    """Row-level security for the audit table (see the module docstring)."""
    t = qn(table)
    return "\n".join(
        [
            f"ALTER TABLE {t} ENABLE ROW LEVEL SECURITY;",
            f"ALTER TABLE {t} FORCE ROW LEVEL SECURITY;",
            f"CREATE POLICY {qn(READ_POLICY)} ON {t} FOR SELECT TO PUBLIC\n"
            f"  USING (tenant_id = {current_tenant});",
            f"CREATE POLICY {qn(INSERT_POLICY)} ON {t} FOR INSERT TO PUBLIC\n"
            f"  WITH CHECK (tenant_id IS NOT DISTINCT FROM {current_tenant});",
            f"CREATE POLICY {qn(SYSTEM_POLICY)} ON {t} FOR ALL TO {qn(system_role)}\n"
            f"  USING ({system_check}) WITH CHECK ({system_check});",
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON {t} TO {qn(system_role)};",
        ]
    )


def disable_rls_sql(table: str = TABLE) -> str:
    t = qn(table)
    return "\n".join(
        [
            f"DROP POLICY IF EXISTS {qn(SYSTEM_POLICY)} ON {t};",
            f"DROP POLICY IF EXISTS {qn(INSERT_POLICY)} ON {t};",
            f"DROP POLICY IF EXISTS {qn(READ_POLICY)} ON {t};",
            f"ALTER TABLE {t} NO FORCE ROW LEVEL SECURITY;",
            f"ALTER TABLE {t} DISABLE ROW LEVEL SECURITY;",
        ]
    )
