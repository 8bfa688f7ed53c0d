"""The tenant scope: which tenant the current code runs as, held in a contextvar and per connection.

Statements carry the scope to PostgreSQL (``better_tenant.statements``), transaction-local, never
session state, so PgBouncer in transaction mode, persistent connections and connection pools
cannot carry a tenant from one request to the next. In signed mode the database accepts a tenant
only from a proof signed with the context key and binds it to the backend and the transaction
(``better_tenant.sql``, "the signed context"): a value that code copies into the session, or
that injected SQL writes, reads as no tenant. ``run_as`` opens ``transaction.atomic`` (a savepoint
when nested) unless given ``atomic=False``.
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.db import connections, transaction
from django.db.backends.signals import connection_created

from better_core.scope import Scope
from better_tenant import sql, statements
from better_tenant.conf import tenant_settings
from better_tenant.exceptions import InvalidTenantId, ScopeConflict, TenantScopeRequired
from better_tenant.statements import STATE_ATTRIBUTE, ConnectionState

if TYPE_CHECKING:
    from better_tenant.models import Tenant


@dataclass(frozen=True)
class TenantContext:
    """What the current scope runs as: one tenant, system mode, or nothing."""

    tenant_id: uuid.UUID | None = None
    is_system: bool = False
    #: Another app's privileged path this scope holds (``holding``), for policies that ask.
    marker: str | None = None
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


STATE_KEY = "_better_tenant_state"


def connection_state(conn: Any) -> ConnectionState:
    """The scopes open on a Django connection (created on first use), shared with its statements."""
    state = conn.__dict__.get(STATE_KEY)
    if state is None:
        state = conn.__dict__[STATE_KEY] = ConnectionState()
    return state


def install(conn: Any) -> None:
    """Make the statements of ``conn`` carry its scope (see ``better_tenant.statements``)."""
    if conn.vendor == "postgresql":
        statements.install(conn, connection_state(conn))


def _connected(sender: Any, connection: Any, **kwargs: Any) -> None:
    install(connection)


connection_created.connect(_connected, dispatch_uid="better_tenant.context.install")


class _DatabaseScope(Scope):
    """Run as ``target`` on the connection of ``using``; with ``atomic``, in ``transaction.atomic``.

    Entering sets nothing in the database: each statement carries the scope in the round trip it
    makes anyway (``better_tenant.statements``).
    """

    uses_database = True

    def __init__(
        self, target: TenantContext, using: str | None = None, atomic: bool = True
    ) -> None:
        self.target = target
        self.using = using
        self.atomic = atomic

    def enter(self) -> TenantContext:
        alias = self.using or tenant_settings.DATABASE
        self.previous = _current.get()
        conn = connections[alias]
        state = connection_state(conn)
        stack = state.scopes
        if stack and stack[-1] is not self.previous:
            # Another scope that is not ours is open on this connection: typically two asyncio
            # tasks of one request sharing Django's sync thread. Their settings would interleave.
            raise ScopeConflict(
                "A tenant scope is already open on this database connection by other concurrent "
                "code (e.g. asyncio.gather inside one request). Scopes on one connection must "
                "nest; run concurrent tenant work in separate requests, threads or "
                "asgiref.sync.ThreadSensitiveContext blocks."
            )
        if (
            conn.connection is not None
            and getattr(conn.connection, STATE_ATTRIBUTE, None) is not state
        ):
            # Connected before this app's connection_created receiver ran (or through a pool).
            install(conn)
        self.transaction = transaction.atomic(using=alias) if self.atomic else None
        if self.transaction is not None:
            self.transaction.__enter__()
        _current.set(self.target)
        stack.append(self.target)
        return self.target

    def exit(self, exc: BaseException | None) -> None:
        alias = self.using or tenant_settings.DATABASE
        # Set, not reset with a token: under async the scope is entered and left in different
        # context copies.
        _current.set(self.previous)
        stack = connection_state(connections[alias]).scopes
        if stack and stack[-1] is self.target:
            stack.pop()
        # The next statement carries the outer scope again; nothing to undo in the database now.
        if self.transaction is not None:
            self.transaction.__exit__(
                type(exc) if exc else None, exc, exc.__traceback__ if exc else None
            )


def run_as(tenant: Any, *, using: str | None = None, atomic: bool = True) -> Scope:
    """Run code as ``tenant`` (a UUID, UUID string or Tenant): with, async with, or decorator.

    The block is one ``transaction.atomic`` (a savepoint when nested); ``atomic=False`` leaves
    transactions to the code inside, as ``TenantMiddleware`` does for a view.
    """
    return _DatabaseScope(TenantContext(tenant_id=to_tenant_id(tenant)), using, atomic)


def run_as_system(*, using: str | None = None, atomic: bool = True) -> Scope:
    """Run code across all tenants (RLS bypassed through the system role) for admin work."""
    return _DatabaseScope(TenantContext(is_system=True), using, atomic)


def holding(marker: str, *, using: str | None = None) -> Scope:
    """Run code, in one transaction, holding ``marker``: policies written with
    ``sql.holds_sql(marker)`` let it through. In signed mode that takes a proof signed with the
    context key, so SQL injected elsewhere cannot claim it; no tenant is in scope meanwhile.
    """
    if not re.fullmatch(sql.MARKER_PATTERN, marker) or marker == sql.SYSTEM_TARGET:
        raise ValueError(
            f"{marker!r} is not a marker: use lower-case letters, digits and underscores, "
            "starting with a letter, and not 'system' (run_as_system() enters that)."
        )
    return _DatabaseScope(TenantContext(marker=marker), using, True)


def no_tenant(*, using: str | None = None, atomic: bool = True) -> Scope:
    """Run code with no tenant in scope (tenant tables then show no rows)."""
    return _DatabaseScope(EMPTY, using, atomic)
