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
  every trail. It does not purge: the append-only triggers (``better_audit.integrity``) refuse
  DELETE in every role but the audit admin role (``BETTER_AUDIT["INTEGRITY"]["ADMIN_ROLE"]``),
  which ``integrity.purge()`` switches to and whose own policies let it read and delete.

Audit rows are inserted without RETURNING: RETURNING would subject the new row to the SELECT
policy, which a row with a NULL tenant never passes.
"""

from __future__ import annotations

import functools

from better_core.roles import qn

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


# --- single-statement capture --------------------------------------------------------------------
#
# The change and its audit rows as one statement: the data statement runs in a data-modifying CTE
# whose RETURNING feeds ``INSERT INTO audit_logs .. SELECT .. FROM src``. ``src`` has the columns
# ``k`` (primary key), ``tenant`` (the row's tenant, or NULL), ``before`` and ``after`` (jsonb row
# images or NULL). Everything known before the statement is bound as a parameter; a column whose
# value is NULL (or an empty array) is left out of the INSERT, so the statement stays as small as
# the entry: parsing and planning it is a good part of its cost.

# The columns the statement computes from ``src``; every other column is bound as a parameter.
_FOLD_COMPUTED = ("id", "record_id", "before_data", "after_data", "diff", "redacted_fields")
# The fields bound as parameters, in the order of their placeholders (that of COLUMNS).
FOLD_PARAMETERS = tuple(column for column in COLUMNS if column not in _FOLD_COMPUTED)
_FOLD_PLACEHOLDERS = {
    "timestamp": "%s::timestamptz",
    "compliance": "%s::text[]",
    "notify": "%s::boolean",
    "metadata": "%s::jsonb",
    "tenant_id": "%s::uuid",
}


def _changed_fields(before: str, after: str) -> str:
    """``changed_fields`` as ``tables.changed_fields`` computes it, in before's key order.

    Both images are ``to_jsonb`` of a row of the same table, with the same keys removed by a key
    filter, so no key is one-sided; jsonb equality is JSON equality (``1 = 1.0``, ``1 <> true``).
    """
    return (
        "coalesce((SELECT jsonb_agg(e.key ORDER BY e.n) "
        f"FROM jsonb_each({before}) WITH ORDINALITY e(key, value, n) "
        f"WHERE {after} -> e.key IS DISTINCT FROM e.value), '[]'::jsonb)"
    )


@functools.lru_cache(maxsize=256)
def fold_insert_sql(
    operation: str,
    present: tuple[str, ...],
    row_tenant: bool,
    key_filter: str | None,
    with_before: bool,
    table: str = TABLE,
) -> str:
    """``INSERT INTO audit_logs .. SELECT .. FROM src`` (see above).

    ``present`` names the ``FOLD_PARAMETERS`` that are bound (the others are NULL or empty).
    ``row_tenant``: ``src.tenant`` may hold the row's tenant, which wins over the tenant
    parameter. ``key_filter`` is None, ``"redact"`` (drop the listed keys) or ``"include"`` (keep
    only the listed keys): the dropped keys that the images hold become ``redacted_fields``,
    sorted by code point as Python sorts them, and leave the images and the changed fields.
    ``with_before``: ``src.before`` holds the rows' images (an update then gets its diff), else it
    is NULL.
    """
    if key_filter is None:
        before, after, redacted = "src.before", "src.after", "'{}'::text[]"
        lateral = ""
    else:
        before, after, redacted = "(src.before - r.gone)", "(src.after - r.gone)", "r.gone"
        test = "k = ANY(%s::text[])" if key_filter == "redact" else "NOT k = ANY(%s::text[])"
        lateral = (
            ' CROSS JOIN LATERAL (SELECT coalesce(array_agg(k ORDER BY k COLLATE "C"), '
            "'{}'::text[]) AS gone FROM (SELECT jsonb_object_keys(coalesce(src.before, '{}')) "
            "UNION SELECT jsonb_object_keys(coalesce(src.after, '{}'))) keys(k) "
            f"WHERE {test}) r"
        )
    values = {"id": "gen_random_uuid()", "record_id": "src.k::text"}
    for name in FOLD_PARAMETERS:
        if name in present:
            values[name] = _FOLD_PLACEHOLDERS.get(name, "%s")
    if row_tenant:
        values["tenant_id"] = (
            "coalesce(src.tenant, %s::uuid)" if "tenant_id" in present else "src.tenant"
        )
    values.setdefault("compliance", "'{}'::text[]")
    values["redacted_fields"] = redacted
    if operation != "INSERT" and with_before:
        values["before_data"] = before
    if operation != "DELETE":
        values["after_data"] = after
    if operation == "UPDATE" and with_before:
        # A set-wise update above MAX_BEFORE_STATE_ROWS has no before-images, and so no diff.
        values["diff"] = (
            f"CASE WHEN src.before IS NOT NULL THEN "
            f"jsonb_build_object('changed_fields', {_changed_fields(before, after)}) END"
        )
    columns = [c for c in COLUMNS if c in values]
    return (
        f"INSERT INTO {qn(table)} ({', '.join(qn(c) for c in columns)}) "
        f"SELECT {', '.join(values[c] for c in columns)} FROM src{lateral}"
    )
