"""Migration operation: row-level security on ``audit_logs`` when better_tenant is installed."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

from django.db import NotSupportedError, router
from django.db.migrations.operations.special import RunSQL

from better_audit import sql
from better_tenant.shortcuts import tenancy_installed


class _PostgresSQL(RunSQL):
    """SQL computed when the migration runs (it names roles from the settings), on PostgreSQL."""

    reversible = True
    # What needs PostgreSQL, for the error raised on another database.
    requirement = ""

    def __init__(self) -> None:
        super().__init__(sql="", reverse_sql="", elidable=False)

    @abstractmethod
    def forward_sql(self) -> str:
        """The SQL that applies the operation."""

    @abstractmethod
    def backward_sql(self) -> str:
        """The SQL that reverses it."""

    def _applies(self, app_label: str, schema_editor: Any) -> bool:
        if not router.allow_migrate(schema_editor.connection.alias, app_label, **self.hints):
            return False
        if schema_editor.connection.vendor != "postgresql":
            raise NotSupportedError(
                f"{self.requirement}; this database is {schema_editor.connection.vendor}."
            )
        return True

    # RunSQL._run_sql, which runs a statement as RunSQL does, is private: the stubs leave it out.
    def database_forwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        if self._applies(app_label, schema_editor):
            self._run_sql(schema_editor, self.forward_sql())  # type: ignore[attr-defined]

    def database_backwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        if self._applies(app_label, schema_editor):
            self._run_sql(schema_editor, self.backward_sql())  # type: ignore[attr-defined]


class AuditLogRLS(_PostgresSQL):
    """Tenant-scoped, append-only RLS on the audit table (see ``better_audit.sql``).

    The SQL is computed when the migration runs, because it names the system role from
    ``BETTER_TENANT["SYSTEM_ROLE"]``, and it is emitted only when better_tenant is installed:
    without it there are no tenants and the table is left as a plain table.
    """

    requirement = "better_audit with better_tenant needs PostgreSQL (row-level security)"

    def __init__(self, table: str = sql.TABLE) -> None:
        self.table = table
        super().__init__()

    def deconstruct(self) -> tuple[str, list, dict]:
        kwargs = {} if self.table == sql.TABLE else {"table": self.table}
        return self.__class__.__name__, [], kwargs

    def describe(self) -> str:
        return f"Tenant row-level security on {self.table} (when better_tenant is installed)"

    def forward_sql(self) -> str:
        from better_tenant import sql as tenant_sql
        from better_tenant.conf import tenant_settings
        from better_tenant.operations import context_functions

        role = tenant_settings.SYSTEM_ROLE
        return "\n".join(
            [
                tenant_sql.ensure_system_role_sql(role),
                context_functions(),
                sql.enable_rls_sql(
                    role, tenant_sql.POLICY_TENANT, tenant_sql.SYSTEM_CHECK, self.table
                ),
            ]
        )

    def backward_sql(self) -> str:
        return sql.disable_rls_sql(self.table)

    def _applies(self, app_label: str, schema_editor: Any) -> bool:
        return tenancy_installed() and super()._applies(app_label, schema_editor)


class AuditAppendOnly(_PostgresSQL):
    """Append-only triggers, the admin role and its policies (see ``better_audit.integrity``).

    Computed when the migration runs, because it names ``BETTER_AUDIT["INTEGRITY"]["ADMIN_ROLE"]``
    (and, backwards, better_tenant's system role, whose grants it gives back).
    """

    requirement = "better_audit's append-only audit trail needs PostgreSQL (roles, triggers)"

    def deconstruct(self) -> tuple[str, list, dict]:
        return self.__class__.__name__, [], {}

    def describe(self) -> str:
        return "Append-only triggers and the privileged admin role on the audit tables"

    def forward_sql(self) -> str:
        from better_audit import integrity

        return integrity.append_only_sql(integrity.admin_role())

    def backward_sql(self) -> str:
        from better_audit import integrity

        system_role = None
        if tenancy_installed():
            from better_tenant.conf import tenant_settings

            system_role = tenant_settings.SYSTEM_ROLE
        return integrity.drop_append_only_sql(integrity.admin_role(), system_role)


class AuditAdminProof(_PostgresSQL):
    """With better_tenant, the admin role's policies ask for the marker only a signed proof
    enters (``better_audit.integrity.ADMIN_MARKER``), so a role switch alone opens nothing."""

    requirement = "better_audit's append-only audit trail needs PostgreSQL (roles, triggers)"

    def deconstruct(self) -> tuple[str, list, dict]:
        return self.__class__.__name__, [], {}

    def describe(self) -> str:
        return "The audit admin role's policies ask for a signed marker (with better_tenant)"

    def forward_sql(self) -> str:
        from better_audit import integrity

        return integrity.admin_proof_sql(integrity.admin_role())

    def backward_sql(self) -> str:
        from better_audit import integrity

        return integrity.admin_proof_sql(integrity.admin_role(), forwards=False)

    def _applies(self, app_label: str, schema_editor: Any) -> bool:
        return tenancy_installed() and super()._applies(app_label, schema_editor)


class AuditTrail(_PostgresSQL):
    """The capture and write functions, and an ``audit_logs`` only they insert into
    (see ``better_audit.trail``); the triggers follow ``BETTER_AUDIT["TABLES"]`` after migrate."""

    requirement = "better_audit's capture triggers need PostgreSQL"

    def deconstruct(self) -> tuple[str, list, dict]:
        return self.__class__.__name__, [], {}

    def describe(self) -> str:
        return "Capture triggers' functions; only they insert into the audit table"

    def forward_sql(self) -> str:
        from better_audit import integrity, trail

        return "\n".join(
            [
                *integrity.context_functions_sql(),
                trail.functions_sql(),
                integrity.revoke_sql(sql.TABLE, "INSERT", integrity.admin_role()),
                trail.writer_policy_sql(_system_role()),
            ]
        )

    def backward_sql(self) -> str:
        from better_audit import trail

        current = None
        if tenancy_installed():
            from better_tenant import sql as tenant_sql

            current = tenant_sql.POLICY_TENANT
        return "\n".join(
            [trail.drop_writer_policy_sql(_system_role(), current), trail.drop_functions_sql()]
        )


def _system_role() -> str | None:
    if not tenancy_installed():
        return None
    from better_tenant.conf import tenant_settings

    return tenant_settings.SYSTEM_ROLE
