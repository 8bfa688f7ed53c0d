"""The SQL better_audit installs and runs: row-level security on ``audit_logs`` and its INSERT.

Policy design, when better_tenant is installed:

- ``rls_audit_read`` (SELECT): ``tenant_id = NULLIF(current_setting(..), '')::uuid``, the same
  index-friendly comparison as the tenant tables, so a tenant reads only its own trail and rows
  without a tenant are read only in system mode.
- ``rls_audit_insert`` (INSERT): ``tenant_id IS NOT DISTINCT FROM`` the tenant in scope, so changes
  made outside any tenant write rows with a NULL tenant and a tenant can never write into another
  tenant's trail.
- no UPDATE or DELETE policy for the application role: under FORCE row-level security its UPDATE
  and DELETE statements match no row, so the trail is append-only for it.
- ``rls_system_audit_logs`` (ALL) for the system role that ``run_as_system()`` switches to: reads
  every trail, and purges.

Audit rows are inserted without RETURNING: RETURNING would subject the new row to the SELECT
policy, which a row with a NULL tenant never passes.
"""

from __future__ import annotations

import functools

TABLE = "audit_logs"
READ_POLICY = "rls_audit_read"
INSERT_POLICY = "rls_audit_insert"
SYSTEM_POLICY = "rls_system_audit_logs"

# Column order of every audit INSERT (AuditEntry.as_params follows it).
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
_CASTS = {
    "id": "::uuid",
    "before_data": "::jsonb",
    "after_data": "::jsonb",
    "diff": "::jsonb",
    "metadata": "::jsonb",
    "compliance": "::text[]",
    "redacted_fields": "::text[]",
    "tenant_id": "::uuid",
}
ROW_PLACEHOLDER = "(" + ", ".join("%s" + _CASTS.get(column, "") for column in COLUMNS) + ")"


def qn(name: str) -> str:
    """Quote an SQL identifier (schema-qualified names are quoted part by part)."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in name.split("."))


@functools.lru_cache(maxsize=64)
def insert_sql(rows: int, *, table: str = TABLE, idempotent: bool = False) -> str:
    """A multi-row INSERT of ``rows`` entries; ``idempotent`` skips ids already written."""
    statement = (
        f"INSERT INTO {qn(table)} ({', '.join(qn(c) for c in COLUMNS)}) VALUES "
        + ", ".join([ROW_PLACEHOLDER] * rows)
    )
    if idempotent:
        statement += " ON CONFLICT (id) DO NOTHING"
    return statement


def enable_rls_sql(system_role: str, current_tenant: str, table: str = TABLE) -> str:
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
            "  USING (true) WITH CHECK (true);",
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
