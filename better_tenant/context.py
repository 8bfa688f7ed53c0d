"""The tenant scope: which tenant the current code runs as, held in a contextvar and in PostgreSQL.

Every scope opens ``transaction.atomic`` (a savepoint when nested) and sets the tenant with
``set_config(.., true)``: transaction-local, never session state, so PgBouncer in transaction mode,
persistent connections and connection pools cannot carry a tenant from one request to the next.
The same statement stamps the transaction (``sql.STAMP_SETTING``), and the policies honour the
tenant only beside that stamp: a tenant that code set at session level reads as no tenant in every
later transaction on the connection.
"""

from __future__ import annotations

import uuid
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.db import DatabaseError, connections, transaction
from psycopg import DatabaseError as _PgDatabaseError
from psycopg.pq import ExecStatus, TransactionStatus

from better_core.scope import Scope
from better_tenant import sql
from better_tenant.conf import tenant_settings
from better_tenant.exceptions import (
    InvalidTenantId,
    ScopeConflict,
    SystemRoleUnavailable,
    TenantScopeRequired,
)

if TYPE_CHECKING:
    from better_tenant.models import Tenant


@dataclass(frozen=True)
class TenantContext:
    """What the current scope runs as: one tenant, system mode, or nothing."""

    tenant_id: uuid.UUID | None = None
    is_system: bool = False
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def tenant(self) -> Tenant | None:
        """The Tenant row (read once per scope; a tenant scope sees its own row of tenants)."""
        if self.tenant_id is None:
            return None
        if "tenant" not in self._cache:
            from better_tenant.models import Tenant

            self._cache["tenant"] = Tenant.objects.filter(pk=self.tenant_id).first()
        return self._cache["tenant"]


EMPTY = TenantContext()
_IDLE = TransactionStatus.IDLE
_TUPLES_OK = ExecStatus.TUPLES_OK
_current: ContextVar[TenantContext] = ContextVar("better_tenant_context", default=EMPTY)


def get_context() -> TenantContext:
    """The current scope (``tenant_id``, ``tenant``, ``is_system``)."""
    return _current.get()


def get_tenant_id() -> uuid.UUID | None:
    return _current.get().tenant_id


def get_tenant() -> Tenant | None:
    """The current Tenant, or None outside a tenant scope."""
    return _current.get().tenant


def require_tenant_id() -> uuid.UUID:
    """The current tenant id, or TenantScopeRequired when no tenant is in scope."""
    tenant_id = _current.get().tenant_id
    if tenant_id is None:
        raise TenantScopeRequired(
            "No tenant is in scope. Run this code inside better_tenant.run_as(tenant_id), or in a "
            "request that TenantMiddleware resolved to a tenant."
        )
    return tenant_id


def to_tenant_id(value: Any) -> uuid.UUID:
    """Normalise a UUID, a UUID string or a Tenant instance to a UUID."""
    if isinstance(value, uuid.UUID):
        return value
    pk = getattr(value, "pk", None)
    if pk is not None and getattr(value, "_meta", None) is not None:
        return to_tenant_id(pk)
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    raise InvalidTenantId(
        f"{value!r} is not a tenant id. Pass a UUID, a UUID string or a Tenant; to look a tenant "
        "up by slug use better_tenant.api.get_tenant_by_slug()."
    )


class _DatabaseScope(Scope):
    """Enter ``target`` on the connection of ``using`` inside an atomic block."""

    uses_database = True

    def __init__(self, target: TenantContext, using: str | None = None) -> None:
        self.target = target
        self.using = using

    def enter(self) -> TenantContext:
        alias = self.using or tenant_settings.DATABASE
        self.previous = _current.get()
        conn = connections[alias]
        stack = conn.__dict__.setdefault("_better_tenant_scopes", [])
        if stack and stack[-1] is not self.previous:
            # Another scope that is not ours is open on this connection: typically two asyncio
            # tasks of one request sharing Django's sync thread. Their settings would interleave.
            raise ScopeConflict(
                "A tenant scope is already open on this database connection by other concurrent "
                "code (e.g. asyncio.gather inside one request). Scopes on one connection must "
                "nest; run concurrent tenant work in separate requests, threads or "
                "asgiref.sync.ThreadSensitiveContext blocks."
            )
        # The outermost block ends the transaction, which drops the settings by itself.
        self.outermost = not conn.in_atomic_block
        self.atomic = transaction.atomic(using=alias)
        self.atomic.__enter__()
        try:
            apply_context(alias, self.target, self.previous)
        except BaseException as exc:
            self.atomic.__exit__(type(exc), exc, exc.__traceback__)
            raise
        _current.set(self.target)
        stack.append(self.target)
        return self.target

    def exit(self, exc: BaseException | None) -> None:
        alias = self.using or tenant_settings.DATABASE
        # Set, not reset with a token: under async the scope is entered and left in different
        # context copies.
        _current.set(self.previous)
        stack = connections[alias].__dict__.get("_better_tenant_scopes") or []
        if stack and stack[-1] is self.target:
            stack.pop()
        try:
            # A released savepoint keeps set_config values, so put the outer scope back by hand;
            # on an error the savepoint rollback restores them.
            if exc is None and not self.outermost and not connections[alias].needs_rollback:
                apply_context(alias, self.previous, self.target)
        finally:
            self.atomic.__exit__(
                type(exc) if exc else None, exc, exc.__traceback__ if exc else None
            )


def apply_context(alias: str, target: TenantContext, current: TenantContext) -> None:
    """Set the tenant (and the role, when system mode changes) for the open transaction."""
    tenant = str(target.tenant_id) if target.tenant_id else ""
    role = None
    if target.is_system != current.is_system:
        role = tenant_settings.SYSTEM_ROLE if target.is_system else "none"
    conn = connections[alias]
    try:
        if not _begin_with_settings(conn, tenant, role):
            with conn.cursor() as cursor:
                if role is None:
                    cursor.execute(f"SELECT {sql.scope_settings_sql('%s')}", [tenant])
                else:
                    cursor.execute(
                        f"SELECT {sql.scope_settings_sql('%s')}, set_config('role', %s, true)",
                        [tenant, role],
                    )
    except DatabaseError as exc:
        if role and ("permission denied to set role" in str(exc) or "does not exist" in str(exc)):
            raise SystemRoleUnavailable(
                f"run_as_system() needs the database role {conn.settings_dict['USER']!r} to be a "
                f"NOINHERIT member of {role!r}: {exc}. Run `manage.py better_tenant init "
                "--app-role <role>` as the owner, or set BETTER_TENANT['SYSTEM_ROLE']."
            ) from exc
        raise


def _begin_with_settings(conn: Any, tenant: str, role: str | None) -> bool:
    """Open the transaction and set the scope in one round trip, when the transaction is new.

    psycopg would otherwise send BEGIN on its own before the set_config query: one more round
    trip on every request. The values are a validated UUID and a configured role name, quoted
    as literals. Skipped while queries are logged (DEBUG), so connection.queries stays complete.
    """
    if conn.queries_logged or not conn.in_atomic_block or conn.vendor != "postgresql":
        return False
    conn.ensure_connection()
    pgconn = conn.connection.pgconn
    if pgconn.transaction_status != _IDLE or conn.connection.autocommit:
        return False
    settings = [sql.scope_settings_sql(sql.literal(tenant))]
    if role is not None:
        settings.append(f"set_config('role', {sql.literal(role)}, true)")
    with conn.wrap_database_errors:
        result = pgconn.exec_(f"BEGIN; SELECT {', '.join(settings)}".encode())
        if result.status != _TUPLES_OK:
            message = (result.error_message or b"").decode(errors="replace").strip()
            raise _PgDatabaseError(message or "better_tenant: setting the tenant failed")
    return True


def run_as(tenant: Any, *, using: str | None = None) -> Scope:
    """Run code as ``tenant`` (a UUID, UUID string or Tenant): with, async with, or decorator."""
    return _DatabaseScope(TenantContext(tenant_id=to_tenant_id(tenant)), using)


def run_as_system(*, using: str | None = None) -> Scope:
    """Run code across all tenants (RLS bypassed through the system role) for admin work."""
    return _DatabaseScope(TenantContext(is_system=True), using)


def no_tenant(*, using: str | None = None) -> Scope:
    """Run code with no tenant in scope (tenant tables then show no rows)."""
    return _DatabaseScope(EMPTY, using)
