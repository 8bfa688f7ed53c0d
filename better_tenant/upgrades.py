"""Migration operations that move a database installed by an earlier migration to today's SQL."""

from __future__ import annotations

from typing import Any

from django.db import router

from better_tenant import keys, sql
from better_tenant.operations import _TenantSQL, context_functions


class BindTenantToTransaction(_TenantSQL):
    """Policies, column defaults and trigger functions honour the tenant only in its transaction.

    Before, they read ``app.current_tenant`` alone, so a value set at session level
    (``set_config(.., false)``) stayed in force for every later transaction on the connection.
    Forwards rewrites every policy and column default of the schemas on the search path that reads
    the tenant the old way, whichever migration created it; backwards restores the old reading.
    """

    def forward_sql(self) -> str:
        return "\n".join(
            [
                sql.rewrite_current_tenant_sql(sql.CURRENT_TENANT_V1, sql.CURRENT_TENANT_V2),
                sql.trigger_functions_sql(sql.CURRENT_TENANT_V2),
            ]
        )

    def backward_sql(self) -> str:
        return "\n".join(
            [
                sql.rewrite_current_tenant_sql(sql.CURRENT_TENANT_V2, sql.CURRENT_TENANT_V1),
                sql.trigger_functions_sql(sql.CURRENT_TENANT_V1),
            ]
        )

    def describe(self) -> str:
        return "Read the tenant setting only in the transaction that set it"


class InstallTenantLookup(_TenantSQL):
    """A tenant reads only its own row of the tenants table; ``better_tenant_lookup()`` maps a
    slug or id to an id for the middleware, which runs before any tenant is in scope."""

    def __init__(self, tenants_table: str = sql.TENANTS_TABLE) -> None:
        super().__init__(tenants_table=tenants_table)

    def forward_sql(self) -> str:
        return sql.tenants_visibility_sql(self.options["tenants_table"])

    def backward_sql(self) -> str:
        return sql.drop_tenants_visibility_sql(self.options["tenants_table"])

    def describe(self) -> str:
        return "Show a tenant only its own tenants row; install better_tenant_lookup()"


class SignTenantContext(_TenantSQL):
    """Policies verify the tenant instead of trusting a setting any SQL could write.

    Forwards installs the key sequences and the context functions (in the mode
    ``BETTER_TENANT["SIGNED_CONTEXT"]`` chooses), makes every policy, column default and trigger
    function read the tenant through ``better_tenant_current()`` and every policy for the system
    role alone require ``better_tenant_is_system()``, then installs the live keys. Backwards
    restores migration 0002's reading and drops the keys.
    """

    def forward_sql(self) -> str:
        role = self._role()
        return "\n".join(
            [
                context_functions(),
                sql.rewrite_current_tenant_sql(
                    sql.CURRENT_TENANT_V2, sql.CURRENT_TENANT_V3, in_policies=sql.POLICY_TENANT
                ),
                sql.trigger_functions_sql(sql.CURRENT_TENANT_V3),
                sql.rewrite_role_policies_sql(role, "true", sql.SYSTEM_CHECK),
            ]
        )

    def backward_sql(self) -> str:
        return "\n".join(
            [
                sql.rewrite_role_policies_sql(self._role(), sql.SYSTEM_CHECK_PRINTED, "true"),
                sql.rewrite_current_tenant_sql(
                    sql.CURRENT_TENANT_V3,
                    sql.CURRENT_TENANT_V2,
                    printed_in_policies=sql.POLICY_TENANT_PRINTED,
                ),
                sql.trigger_functions_sql(sql.CURRENT_TENANT_V2),
                sql.drop_context_functions_sql(),
            ]
        )

    @staticmethod
    def _role() -> str:
        from better_tenant.conf import tenant_settings

        return tenant_settings.SYSTEM_ROLE

    def database_forwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        super().database_forwards(app_label, schema_editor, from_state, to_state)
        from better_tenant.conf import tenant_settings

        if tenant_settings.SIGNED_CONTEXT and router.allow_migrate(
            schema_editor.connection.alias, app_label, **self.hints
        ):
            keys.install(schema_editor.connection)

    def describe(self) -> str:
        return "Verify the tenant context in the database (signed context and its keys)"


class RefreshContextFunctions(_TenantSQL):
    """Install this version's context functions over an earlier version's.

    The functions always follow the installed code, whichever migration installed them last: a
    database migrated by an earlier version verifies its proofs the earlier way, and every proof
    this version signs would be refused. Backwards keeps them (the earlier version's functions are
    not in this code); after going back to an earlier version, ``manage.py better_tenant init``
    installs its own.
    """

    def forward_sql(self) -> str:
        return context_functions()

    def backward_sql(self) -> str:
        return ""

    def describe(self) -> str:
        return "Install the context functions of this version"
