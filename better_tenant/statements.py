"""The tenant context on each statement: with it in autocommit, set once in a transaction.

A scope sets nothing when it opens. Each statement sent on a connection carries what it needs,
in the round trip it already makes:

* outside a transaction (Django's default, autocommit), a statement that reads or writes rows
  goes with the settings before it, which PostgreSQL runs as one implicit transaction, so the
  transaction-local settings hold for the statement and are gone after it. No BEGIN or COMMIT
  the application did not ask for. In signed mode (the default) the settings are
  ``SELECT better_tenant_enter($1)`` with the proof as a bound parameter, sent with the statement
  in one pipeline ended by one Sync; unsigned, ``SELECT set_config(..); <statement>`` in one
  simple-query string.
* inside a transaction, the first statement carries them and later ones carry nothing until the
  scope changes; a rollback to a savepoint makes the next statement carry them again.
* where one round trip cannot hold both (``executemany``, ``COPY``, ``stream``, named cursors,
  server-side binding with parameters, a query of several statements, pipeline mode) the settings
  go first on their own, inside a transaction opened for that one call when none is open.

It works below Django, on the psycopg connection (its ``cursor_factory``), so that raw cursors
and ``cursor.copy()`` carry the context too; Django's named cursors, which psycopg builds without
that factory, get it through an execute wrapper. Statements that must not run in a transaction
block (``CREATE INDEX CONCURRENTLY``, ``VACUUM``) and other utility statements never carry it
outside a transaction: only statements that start with a keyword that reads or writes rows do.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql as pgsql
from psycopg.pq import TransactionStatus

from better_tenant import keys, pipeline, sql
from better_tenant.conf import tenant_settings
from better_tenant.exceptions import SystemRoleUnavailable

if TYPE_CHECKING:
    from better_tenant.context import TenantContext

_IDLE = TransactionStatus.IDLE
_INTRANS = TransactionStatus.INTRANS
#: Set on the psycopg connection: the state of the Django connection that owns it.
STATE_ATTRIBUTE = "_better_tenant_state"

# The first keyword of a statement that may read or write rows of a tenant table: outside a
# transaction only these carry the scope. Everything else (DDL, SET, VACUUM, LOCK...) runs with no
# tenant there, so that no statement that cannot run in a transaction block gets a prefix.
_ROW_KEYWORDS = frozenset(
    {"select", "with", "insert", "update", "delete", "merge", "values", "table", "explain", "do"}
    | {"copy", "execute", "declare"}
)
# Statements that end, start or mark a transaction, which never carry the scope.
_TRANSACTION_KEYWORDS = frozenset(
    {"begin", "start", "commit", "end", "rollback", "abort", "savepoint", "release", "prepare"}
)
_LEADING = re.compile(r"\s*(?:(?:--[^\n]*\n|/\*.*?\*/|\()\s*)*([A-Za-z]+)", re.DOTALL)
_SAVEPOINT_ROLLBACK = re.compile(r"\s*rollback\s+to\b", re.IGNORECASE)


class _Unknown:
    """What a transaction holds after a rollback to a savepoint: the settings are unknown."""

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Any = _Unknown()


@dataclass
class ConnectionState:
    """The scopes open on one Django connection and what its open transaction holds."""

    scopes: list[TenantContext] = field(default_factory=list)
    #: What the settings of the open transaction hold: None when nothing was set in it, UNKNOWN
    #: after a rollback to a savepoint, else the context set by a statement of this transaction.
    applied: Any = None

    def wanted(self) -> TenantContext | None:
        """The innermost scope, None when it runs as no tenant (or none is open)."""
        if not self.scopes:
            return None
        top = self.scopes[-1]
        return top if top.tenant_id is not None or top.is_system or top.marker else None


def _head(query: Any, cursor: Any) -> str:
    """The start of a statement, enough to read its first keyword."""
    if isinstance(query, str):
        return query[:512]
    if isinstance(query, bytes):
        return query[:512].decode("latin-1")
    # psycopg.sql objects (Django's callproc builds one), rendered with the cursor's context.
    return str(query.as_string(cursor))[:512]


def _may_hold_several(query: Any, cursor: Any) -> bool:
    """Whether a ``;`` stands before the end of the query (a literal's counts too: that errs
    on the safe side, the path that takes any string)."""
    if isinstance(query, bytes):
        return b";" in query.rstrip().rstrip(b";")
    text = query if isinstance(query, str) else str(query.as_string(cursor))
    return ";" in text.rstrip().rstrip(";")


def _first_keyword(head: str) -> str:
    found = _LEADING.match(head)
    return found.group(1).lower() if found else ""


def _prefixed(prefix: str, query: Any) -> Any:
    if isinstance(query, str):
        return f"{prefix}; {query}"
    if isinstance(query, bytes):
        return f"{prefix}; ".encode() + query
    return pgsql.Composed([pgsql.SQL(f"{prefix}; "), query])


def settings_sql(target: TenantContext | None, held: Any, placeholder: str = "%s") -> str:
    """The ``SELECT`` making the transaction hold ``target`` (None: no tenant) after ``held``.

    In signed mode a tenant or system mode is entered through ``better_tenant_enter(%s)``, whose
    proof goes as a bound parameter (``proof_for``); no tenant needs no proof. ``placeholder`` is
    that parameter's spelling: psycopg's ``%s``, or ``$1`` for libpq.
    """
    tenant = str(target.tenant_id) if target is not None and target.tenant_id else ""
    is_system = target is not None and target.is_system
    if not tenant_settings.SIGNED_CONTEXT:
        parts = [sql.scope_settings_sql(sql.literal(tenant))]
    elif tenant or is_system or (target is not None and target.marker):
        parts = [f"{sql.ENTER_FUNCTION}({placeholder})"]
    else:
        parts = [f"pg_catalog.set_config('{sql.SETTING}', '', true)"]
    # The role changes only when system mode does; after a savepoint rollback it may be either.
    # Qualified, as the context functions are: no function another schema adds runs in its place.
    held_system = held is not None and held is not UNKNOWN and held.is_system
    if is_system and not held_system:
        parts.append(
            f"pg_catalog.set_config('role', {sql.literal(tenant_settings.SYSTEM_ROLE)}, true)"
        )
    elif not is_system and (held_system or held is UNKNOWN):
        parts.append("pg_catalog.set_config('role', 'none', true)")
    return "SELECT " + ", ".join(parts)


def proof_for(target: TenantContext | None) -> list[str] | None:
    """The bound parameters of ``settings_sql(target, ..)``: a proof in signed mode, else none."""
    if target is None or not tenant_settings.SIGNED_CONTEXT:
        return None
    if target.tenant_id is not None:
        return [keys.proof(str(target.tenant_id))]
    if target.is_system:
        return [keys.proof(sql.SYSTEM_TARGET)]
    return [keys.proof(target.marker)] if target.marker else None


def _hide_prefix(cursor: Any, prefix: str) -> None:
    """Make the query psycopg reports (Django's ``connection.queries``, ``CaptureQueriesContext``,
    the debug toolbar) the caller's statement, without the settings sent before it."""
    sent = getattr(cursor, "_query", None)
    head = f"{prefix}; ".encode()
    if sent is not None and isinstance(sent.query, bytes) and sent.query.startswith(head):
        sent.query = sent.query[len(head) :]


def _wanted(conn: Any, state: ConnectionState) -> tuple[TenantContext | None, bool] | None:
    """What the next statement must set, and whether it runs in a transaction; None: nothing.

    Nothing is set outside a transaction, whatever an earlier one held; inside one, the settings
    are what its last prefix made them, unless a rollback to a savepoint made them unknown.
    """
    wanted = state.wanted()
    status = conn.pgconn.transaction_status
    if status == _IDLE:
        state.applied = None
        return None if wanted is None else (wanted, not conn.autocommit)
    if status == _INTRANS:
        held = state.applied
        return None if held is not UNKNOWN and held == wanted else (wanted, True)
    # A failed transaction refuses every statement; an active one is mid-COPY.
    return None


def _system_role_error(exc: Exception, target: TenantContext | None, conn: Any) -> None:
    message = str(exc)
    role = tenant_settings.SYSTEM_ROLE
    # Only the role's own errors: a missing table in the statement is not one.
    if (
        target is not None
        and target.is_system
        and ("permission denied to set role" in message or f'role "{role}" does not' in message)
    ):
        raise SystemRoleUnavailable(
            f"run_as_system() needs the database role {conn.info.user!r} to be a NOINHERIT "
            f"member of {role!r}: {message.strip()}. Run `manage.py "
            "better_tenant init --app-role <role>` as the owner, or set "
            "BETTER_TENANT['SYSTEM_ROLE']."
        ) from exc


def _apply_alone(conn: Any, state: ConnectionState, target: TenantContext | None) -> None:
    """Set ``target`` for the open transaction with a statement of its own."""
    statement = settings_sql(target, state.applied)
    try:
        # A plain psycopg cursor: this statement must not pass through the prefixing cursor, and
        # it binds the proof on the server, so the proof is in no statement text.
        psycopg.Cursor(conn).execute(statement, proof_for(target))
    except psycopg.Error as exc:
        _system_role_error(exc, target, conn)
        raise
    state.applied = target


@contextmanager
def _settings_first(
    conn: Any, state: ConnectionState, target: TenantContext | None
) -> Iterator[None]:
    """Run the body with ``target`` set by a statement of its own, in a transaction.

    In autocommit the transaction is opened for the body alone (what one prefixed string would
    have been); inside a transaction the settings join it.
    """
    if conn.autocommit and conn.pgconn.transaction_status == _IDLE:
        with conn.transaction():
            _apply_alone(conn, state, target)
            try:
                yield
            finally:
                state.applied = None
        return
    _apply_alone(conn, state, target)
    yield


def _plan(cursor: Any, query: Any) -> tuple[ConnectionState, TenantContext | None] | None:
    """The state and the context the statement must set; None: send it as is."""
    state: ConnectionState | None = getattr(cursor.connection, STATE_ATTRIBUTE, None)
    if state is None or (state.applied is None and not state.scopes):
        return None
    wanted = _wanted(cursor.connection, state)
    if wanted is None:
        if state.applied is not None and _SAVEPOINT_ROLLBACK.match(_head(query, cursor)):
            # Settings made after the savepoint are undone, those made before are not.
            state.applied = UNKNOWN
        return None
    target, in_transaction = wanted
    keyword = _first_keyword(_head(query, cursor))
    if keyword in _TRANSACTION_KEYWORDS:
        if keyword == "rollback" and in_transaction:
            state.applied = UNKNOWN
        return None
    # In a transaction every statement runs under its settings (a role included), so each
    # one brings them in line; outside, only statements that touch rows need them.
    if not in_transaction and keyword not in _ROW_KEYWORDS:
        return None
    return state, target


class TenantCursorMixin:
    """Carry the scope's tenant on every statement of a psycopg cursor (see the module)."""

    connection: Any

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        plan = _plan(self, query)
        if plan is None:
            return super().execute(query, params, **kwargs)  # type: ignore[misc]
        state, target = plan
        conn = self.connection
        # One string holds two statements only in the simple-query protocol: client-side
        # binding (Django's default) or no parameters, outside pipeline mode, text results.
        simple = (
            (isinstance(self, psycopg.ClientCursor) or not params)
            and not kwargs.get("binary")
            and getattr(conn, "_pipeline", None) is None
        )
        if not simple:
            with _settings_first(conn, state, target):
                return super().execute(query, params, **kwargs)  # type: ignore[misc]
        proof = proof_for(target)
        if proof is not None:
            if _may_hold_several(query, self):
                # Perhaps several statements, which the extended protocol of a pipeline refuses.
                with _settings_first(conn, state, target):
                    return super().execute(query, params, **kwargs)  # type: ignore[misc]
            return self._execute_signed(state, target, proof, query, params, **kwargs)
        prefix = settings_sql(target, state.applied)
        try:
            super().execute(_prefixed(prefix, query), params, **kwargs)  # type: ignore[misc]
        except psycopg.Error as exc:
            _system_role_error(exc, target, conn)
            raise
        # The first result is the settings' row: show the statement's own, as without a prefix.
        self.nextset()  # type: ignore[attr-defined]
        _hide_prefix(self, prefix)
        if conn.pgconn.transaction_status == _INTRANS:
            state.applied = target
        return self

    def _execute_signed(
        self,
        state: ConnectionState,
        target: TenantContext | None,
        proof: list[str],
        query: Any,
        params: Any,
        **kwargs: Any,
    ) -> Any:
        """Send the settings with a bound proof and the statement in one round trip.

        A pipeline sends both before a single Sync: in autocommit they are one implicit
        transaction, as a prefixed simple query would be, and in a transaction the settings join it.
        libpq's pipeline is driven directly where psycopg allows it (``better_tenant.pipeline``),
        else through psycopg's ``Pipeline``.
        """
        conn = self.connection
        try:
            if pipeline.SUPPORTED and not kwargs:
                statement = settings_sql(target, state.applied, "$1")
                pipeline.execute(self, statement.encode(), proof[0], query, params)
            else:
                with conn.pipeline():
                    statement = settings_sql(target, state.applied)
                    psycopg.Cursor(conn).execute(statement, proof)
                    super().execute(query, params, **kwargs)  # type: ignore[misc]
        except psycopg.Error as exc:
            _system_role_error(exc, target, conn)
            raise
        if conn.pgconn.transaction_status == _INTRANS:
            state.applied = target
        return self

    def executemany(self, query: Any, params_seq: Any, **kwargs: Any) -> Any:
        plan = _plan(self, query)
        if plan is None:
            return super().executemany(query, params_seq, **kwargs)  # type: ignore[misc]
        with _settings_first(self.connection, *plan):
            return super().executemany(query, params_seq, **kwargs)  # type: ignore[misc]

    @contextmanager
    def copy(self, statement: Any, params: Any = None, **kwargs: Any) -> Iterator[Any]:
        plan = _plan(self, statement)
        if plan is None:
            with super().copy(statement, params, **kwargs) as copy:  # type: ignore[misc]
                yield copy
            return
        with (
            _settings_first(self.connection, *plan),
            super().copy(statement, params, **kwargs) as copy,  # type: ignore[misc]
        ):
            yield copy

    def stream(self, query: Any, params: Any = None, **kwargs: Any) -> Iterator[Any]:
        plan = _plan(self, query)
        if plan is None:
            yield from super().stream(query, params, **kwargs)  # type: ignore[misc]
            return
        with _settings_first(self.connection, *plan):
            yield from super().stream(query, params, **kwargs)  # type: ignore[misc]


_CURSOR_CLASSES: dict[type, type] = {}


def cursor_class(base: type) -> type:
    """``base`` with the tenant carried on its statements (one class per base, reused)."""
    if issubclass(base, TenantCursorMixin):
        return base
    if base not in _CURSOR_CLASSES:
        _CURSOR_CLASSES[base] = type(f"Tenant{base.__name__}", (TenantCursorMixin, base), {})
    return _CURSOR_CLASSES[base]


def named_cursor_wrapper(
    execute: Callable[..., Any], query: Any, params: Any, many: bool, context: dict[str, Any]
) -> Any:
    """A Django execute wrapper for named (server-side) cursors, which skip ``cursor_factory``.

    ``DECLARE`` cannot share a string with the settings: they go first, in a transaction that,
    in autocommit, ends once the holdable cursor Django declares there has its rows.
    """
    cursor = context["cursor"].cursor
    if isinstance(cursor, psycopg.ServerCursor):
        plan = _plan(cursor, query)
        if plan is not None:
            with _settings_first(cursor.connection, *plan):
                return execute(query, params, many, context)
    return execute(query, params, many, context)


def install(connection: Any, state: ConnectionState) -> None:
    """Make the psycopg connection of ``connection`` (a Django wrapper) carry ``state``."""
    raw = connection.connection
    if raw is None or not isinstance(raw, psycopg.Connection):
        return
    setattr(raw, STATE_ATTRIBUTE, state)
    raw.cursor_factory = cursor_class(raw.cursor_factory)
    if named_cursor_wrapper not in connection.execute_wrappers:
        connection.execute_wrappers.insert(0, named_cursor_wrapper)
