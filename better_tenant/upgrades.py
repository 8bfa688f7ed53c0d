"""Migration operations that move a database installed by an earlier migration to today's SQL."""

from __future__ import annotations

from better_tenant import sql
from better_tenant.operations import _TenantSQL


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
