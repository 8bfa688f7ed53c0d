"""Migration operations installing better_tenant's SQL (RunSQL-based, reversible, in sqlmigrate)."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

from django.db import NotSupportedError, router
from django.db.migrations.operations.special import RunSQL

from better_tenant import sql


class _TenantSQL(RunSQL):
    """RunSQL whose statements are computed when the migration runs (they name settings' roles)."""

    reversible = True

    def __init__(self, **kwargs: Any) -> None:
        self.options = kwargs
        super().__init__(sql="", reverse_sql="", elidable=False)

    @abstractmethod
    def forward_sql(self) -> str:
        """The SQL that applies the operation."""

    @abstractmethod
    def backward_sql(self) -> str:
        """The SQL that reverses it."""

    def deconstruct(self) -> tuple[str, list, dict]:
        return self.__class__.__name__, [], dict(self.options)

    # RunSQL._run_sql, which runs a statement as RunSQL does, is private: the stubs leave it out.
    def database_forwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        if router.allow_migrate(schema_editor.connection.alias, app_label, **self.hints):
            _require_postgres(schema_editor)
            self._run_sql(schema_editor, self.forward_sql())  # type: ignore[attr-defined]

    def database_backwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        if router.allow_migrate(schema_editor.connection.alias, app_label, **self.hints):
            _require_postgres(schema_editor)
            self._run_sql(schema_editor, self.backward_sql())  # type: ignore[attr-defined]


def _system_role() -> str:
    from better_tenant.conf import tenant_settings

    return tenant_settings.SYSTEM_ROLE


def context_functions() -> str:
    """``sql.context_functions_sql`` in the mode the settings choose (idempotent).

    Every operation whose SQL calls those functions emits it first, since a migration of another
    app may create its policies before better_tenant's own migrations have run.
    """
    from better_tenant.conf import tenant_settings

    return sql.context_functions_sql(tenant_settings.SIGNED_CONTEXT)


def _require_postgres(schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        raise NotSupportedError(
            "better_tenant needs PostgreSQL (row-level security); this database is "
            f"{schema_editor.connection.vendor}."
        )


class InstallTenantRLS(_TenantSQL):
    """The system role, the ``set_tenant_id()`` trigger function and the tenants-table policies."""

    def __init__(self, tenants_table: str = sql.TENANTS_TABLE) -> None:
        super().__init__(tenants_table=tenants_table)

    def forward_sql(self) -> str:
        role = _system_role()
        return "\n".join(
            [
                sql.ensure_system_role_sql(role),
                context_functions(),
                sql.trigger_function_sql(),
                sql.tenants_table_sql(role, self.options["tenants_table"]),
            ]
        )

    def backward_sql(self) -> str:
        return "\n".join(
            [
                sql.drop_tenants_table_sql(self.options["tenants_table"]),
                sql.drop_trigger_function_sql(),
            ]
        )

    def describe(self) -> str:
        return "Install better_tenant's trigger function and tenants-table policies"


class EnableTenantRLS(_TenantSQL):
    """RLS, policies, trigger and composite keys for a table created outside ``TenantModel``.

    ``foreign_keys`` is a list of ``[column, to_table]`` or ``[column, to_table, to_column]``.
    """

    def __init__(
        self,
        table: str,
        pk_column: str | None = "id",
        foreign_keys: list[list[str]] | None = None,
    ) -> None:
        kwargs: dict[str, Any] = {"table": table}
        if pk_column != "id":
            kwargs["pk_column"] = pk_column
        if foreign_keys:
            kwargs["foreign_keys"] = [list(fk) for fk in foreign_keys]
        super().__init__(**kwargs)

    def spec(self) -> sql.TableSpec:
        return sql.TableSpec(
            table=self.options["table"],
            system_role=_system_role(),
            pk_column=self.options.get("pk_column", "id"),
            foreign_keys=tuple(
                sql.ForeignKeySpec(*fk) for fk in self.options.get("foreign_keys", [])
            ),
        )

    def forward_sql(self) -> str:
        return sql.enable_table_sql(self.spec())

    def backward_sql(self) -> str:
        return sql.disable_table_sql(self.spec())

    def describe(self) -> str:
        return f"Enable tenant row-level security on {self.options['table']}"


class OptionalTenantRLS(_TenantSQL):
    """Tenant RLS for another app's table with a nullable ``tenant_id``, if better_tenant is on.

    For apps that work with or without better_tenant (webhooks, mail): their migrations always
    include this operation, and it only emits SQL when better_tenant is installed. Rows written in
    a tenant scope get that tenant; a tenant reads only its rows; rows without a tenant are read
    and written in system mode (and, with ``untenanted_writes=True``, also written by code that
    runs outside any tenant scope).
    """

    def __init__(self, table: str, untenanted_writes: bool = False) -> None:
        kwargs: dict[str, Any] = {"table": table}
        if untenanted_writes:
            kwargs["untenanted_writes"] = True
        super().__init__(**kwargs)

    def _installed(self) -> bool:
        from django.apps import apps

        return apps.is_installed("better_tenant")

    def forward_sql(self) -> str:
        if not self._installed():
            return ""
        role = _system_role()
        return "\n".join(
            [
                sql.ensure_system_role_sql(role),
                context_functions(),
                sql.enable_optional_table_sql(
                    self.options["table"], role, self.options.get("untenanted_writes", False)
                ),
            ]
        )

    def backward_sql(self) -> str:
        return sql.disable_optional_table_sql(self.options["table"]) if self._installed() else ""

    def describe(self) -> str:
        return f"Tenant row-level security on {self.options['table']} (with better_tenant)"

    def database_forwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        if self._installed():
            super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        if self._installed():
            super().database_backwards(app_label, schema_editor, from_state, to_state)
