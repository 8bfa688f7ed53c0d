"""Database introspection behind ``manage.py better_tenant check``: facts gathered, then judged.

Gathering (``inspect_*``) only reads the catalogs; judging (``evaluate_*``) turns facts into
``Finding`` objects, so each rule can be exercised on facts that a test database cannot easily
produce (a superuser runtime role, for instance). ``run_checks`` does both, plus a live smoke
test that writes as two throwaway tenants and rolls everything back.
"""

from __future__ import annotations

import datetime
import decimal
import re
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from django.apps import apps
from django.db import DatabaseError, DataError, IntegrityError, connections, transaction
from django.db.models import Model
from django.utils import timezone

from better_tenant import sql

OK = "ok"
WARNING = "warning"
ERROR = "error"
INFO = "info"
SMOKE = "smoke test"

DML = ("SELECT", "INSERT", "UPDATE", "DELETE")
TENANTS_COLUMNS = ("id", "name", "slug", "created_at")
_COMMANDS = {"*": "ALL", "r": "SELECT", "a": "INSERT", "w": "UPDATE", "d": "DELETE"}


@dataclass(frozen=True)
class Finding:
    """One verdict of the check: ``status`` is ok, warning, error or info."""

    status: str
    section: str
    code: str
    message: str
    hint: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class Report:
    """Everything ``run_checks`` found, in display order."""

    findings: list[Finding] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.status == ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.status == WARNING]

    @property
    def ok(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "passed": sum(1 for f in self.findings if f.status == OK),
            "tables": list(self.tables),
            "findings": [f.as_dict() for f in self.findings],
        }


# --- facts ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoleFacts:
    """The runtime role and how it relates to the system role."""

    name: str
    superuser: bool
    bypassrls: bool
    system_role: str
    system_role_exists: bool
    can_set_system_role: bool
    inherits_system_role: bool


@dataclass(frozen=True)
class PolicyFacts:
    name: str
    command: str  # ALL, SELECT, INSERT, UPDATE or DELETE
    permissive: bool
    roles: tuple[str, ...]
    using: str | None
    with_check: str | None
    applies_to_runtime: bool
    names_system_role: bool


@dataclass(frozen=True)
class IndexFacts:
    name: str
    columns: tuple[str | None, ...]  # key columns; None for an expression
    unique: bool
    primary: bool
    partial: bool
    definition: str


@dataclass(frozen=True)
class ForeignKeyFacts:
    name: str
    columns: tuple[str, ...]
    ref_table: str
    ref_columns: tuple[str, ...]


@dataclass(frozen=True)
class TableFacts:
    """What the catalogs say about one table (``exists`` False leaves the rest empty)."""

    name: str
    exists: bool
    model: str | None = None  # "app_label.Model" when the table belongs to a TenantModel
    columns: dict[str, str] = field(default_factory=dict)  # name -> type
    owner: str = ""
    rls_enabled: bool = False
    rls_forced: bool = False
    policies: tuple[PolicyFacts, ...] = ()
    triggers: tuple[tuple[str, str, bool], ...] = ()  # (name, function, enabled)
    indexes: tuple[IndexFacts, ...] = ()
    foreign_keys: tuple[ForeignKeyFacts, ...] = ()
    runtime_privileges: frozenset[str] = frozenset()
    system_privileges: frozenset[str] = frozenset()

    @property
    def has_tenant_id(self) -> bool:
        return "tenant_id" in self.columns

    @property
    def has_trigger(self) -> bool:
        return any(
            name == sql.TRIGGER_NAME and function == sql.TRIGGER_FUNCTION and enabled
            for name, function, enabled in self.triggers
        )

    @property
    def pk_column(self) -> str | None:
        for index in self.indexes:
            if index.primary and len(index.columns) == 1:
                return index.columns[0]
        return None

    def has_unique_on(self, columns: Iterable[str]) -> bool:
        wanted = set(columns)
        return any(
            i.unique and not i.partial and None not in i.columns and set(i.columns) == wanted
            for i in self.indexes
        )


@dataclass(frozen=True)
class GuardedTable:
    """A table whose rows belong to tenants, with what decides who row-level security skips."""

    oid: int
    name: str
    owner: str
    rls_enabled: bool
    rls_forced: bool
    policies: tuple[PolicyFacts, ...] = ()


@dataclass(frozen=True)
class OwnerFacts:
    """A role that owns a view or a function, as far as row-level security cares."""

    name: str
    superuser: bool = False
    bypassrls: bool = False
    member_of: frozenset[str] = frozenset()  # roles whose privileges it has, itself included


@dataclass(frozen=True)
class RelationFacts:
    """A view or materialized view outside the system schemas."""

    oid: int
    name: str  # as regclass prints it: schema-qualified when off the search path
    relname: str
    materialized: bool
    owner: str
    security_invoker: bool
    reads: tuple[int, ...]  # relations its rules read, from pg_depend
    runtime_grantees: tuple[str, ...] = ()  # PUBLIC or roles through which the runtime reads it


@dataclass(frozen=True)
class FunctionFacts:
    """A function or procedure outside the system schemas and extensions."""

    oid: int
    schema: str
    name: str
    signature: str  # as regprocedure prints it, e.g. lookup(text)
    owner: str
    security_definer: bool
    language: str
    source: str  # prosrc: the body as written (empty for a BEGIN ATOMIC body)
    procedure: bool = False
    reads: tuple[int, ...] = ()  # relations recorded in pg_depend (BEGIN ATOMIC bodies)
    calls: tuple[int, ...] = ()  # functions recorded in pg_depend (BEGIN ATOMIC bodies)
    runtime_grantees: tuple[str, ...] = ()  # PUBLIC or roles through which the runtime runs it


@dataclass(frozen=True)
class BypassFacts:
    """Views, materialized views and functions, and the tenant tables they may read."""

    tables: dict[int, GuardedTable]
    relations: dict[int, RelationFacts]
    functions: dict[int, FunctionFacts]
    owners: dict[str, OwnerFacts]
    server_version: int
    # Where the suite's own migrations put their objects: the tenants table's schema and owner.
    suite_schema: str = ""
    suite_owner: str = ""


# --- gathering -----------------------------------------------------------------------------------


def tenant_model_tables() -> dict[str, str]:
    """``db_table -> "app_label.Model"`` for every concrete, managed TenantModel."""
    from better_tenant.constraints import is_tenant_model

    tables = {}
    for model in apps.get_models():
        meta = model._meta
        if meta.abstract or meta.proxy or not meta.managed or not is_tenant_model(model):
            continue
        tables[meta.db_table] = meta.label
    return tables


# Ordinary and partitioned tables on the search path that have a tenant_id column.
_TENANT_ID_TABLES = """
    SELECT c.relname FROM pg_attribute a
    JOIN pg_class c ON c.oid = a.attrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE a.attname = 'tenant_id' AND a.attnum > 0 AND NOT a.attisdropped
      AND c.relkind IN ('r', 'p') AND NOT c.relispartition
      AND pg_table_is_visible(c.oid)
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
"""


def tables_with_tenant_id(cursor: Any) -> list[str]:
    """Ordinary and partitioned tables on the search path that have a ``tenant_id`` column."""
    cursor.execute(_TENANT_ID_TABLES + " ORDER BY c.relname")
    return [row[0] for row in cursor.fetchall()]


# Tables with a tenant_id column that another app secures with policies of its own (better_audit's
# audit_logs, whose rows may belong to no tenant): not tenant tables, so not judged as such.
# Filled through exempt_table().
EXEMPT_TABLES: set[str] = set()


def exempt_table(name: str) -> None:
    """Leave the table ``name`` out of the tenant tables (those ``better_tenant check`` judges).

    For a table with a ``tenant_id`` column that is secured by policies of its own rather than
    the tenant-table policies: apps whose nullable-tenant tables are secured by
    ``better_tenant.operations.OptionalTenantRLS`` call it from their ``AppConfig.ready()`` (as
    better_audit does for ``audit_logs``). Idempotent.
    """
    EXEMPT_TABLES.add(name)


# SECURITY DEFINER functions installed on purpose (a slug-to-id lookup that must read past
# row-level security, say): name -> why, shown in the report. Filled through exempt_function().
EXEMPT_FUNCTIONS: dict[str, str] = {}


def exempt_function(name: str, reason: str) -> None:
    """Let ``better_tenant check`` accept the SECURITY DEFINER function ``name`` on purpose.

    The exemption is narrow: it covers only a function of that name in the schema of the tenants
    table and owned by the owner of the tenants table (the role that runs the migrations which
    install it). The same name in another schema or under another owner is judged as usual, as
    is every view. Apps call it from ``AppConfig.ready()``; ``reason`` is shown in the report.
    """
    EXEMPT_FUNCTIONS[name] = reason


exempt_function(
    sql.LOOKUP_FUNCTION,
    "better_tenant's identifier lookup (better_tenant.lookup): it returns the id of the tenant "
    "with exactly that slug or id, and nothing else",
)


def tenant_tables(cursor: Any) -> dict[str, str | None]:
    """Tenant tables: those of TenantModels plus any with a tenant_id column (model or None)."""
    tables: dict[str, str | None] = dict(tenant_model_tables())
    for name in tables_with_tenant_id(cursor):
        tables.setdefault(name, None)
    tables.pop(_tenants_table(), None)
    for name in EXEMPT_TABLES:
        tables.pop(name, None)
    return dict(sorted(tables.items()))


def trigger_function_exists(cursor: Any) -> bool:
    cursor.execute("SELECT to_regprocedure(%s) IS NOT NULL", [f"{sql.TRIGGER_FUNCTION}()"])
    return bool(cursor.fetchone()[0])


def _role_oid(cursor: Any, role: str) -> int | None:
    cursor.execute("SELECT oid FROM pg_roles WHERE rolname = %s", [role])
    row = cursor.fetchone()
    return row[0] if row else None


def inspect_role(cursor: Any, system_role: str, role: str | None = None) -> RoleFacts:
    """Facts about ``role`` (default: the connected role) and its tie to ``system_role``."""
    if role is None:
        cursor.execute("SELECT current_user")
        role = cursor.fetchone()[0]
    cursor.execute("SELECT oid, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = %s", [role])
    row = cursor.fetchone()
    if row is None:
        raise ValueError(f"The role {role!r} does not exist.")
    role_oid, superuser, bypassrls = row
    system_oid = _role_oid(cursor, system_role)
    can_set = inherits = False
    if system_oid is not None:
        cursor.execute("SELECT current_setting('server_version_num')::int")
        # PostgreSQL 16 separates "may SET ROLE" from "is a member"; older servers do not.
        mode = "SET" if cursor.fetchone()[0] >= 160000 else "MEMBER"
        cursor.execute(
            "SELECT pg_has_role(%s, %s, %s), pg_has_role(%s, %s, 'USAGE')",
            [role_oid, system_oid, mode, role_oid, system_oid],
        )
        can_set, inherits = cursor.fetchone()
    return RoleFacts(
        name=role,
        superuser=bool(superuser),
        bypassrls=bool(bypassrls),
        system_role=system_role,
        system_role_exists=system_oid is not None,
        can_set_system_role=bool(can_set),
        inherits_system_role=bool(inherits) and not superuser,
    )


def inspect_table(
    cursor: Any,
    table: str,
    system_role: str,
    role: str | None = None,
    model: str | None = None,
) -> TableFacts:
    """Read one table's RLS flags, policies, triggers, indexes, foreign keys and privileges."""
    cursor.execute(
        "SELECT c.oid, c.relrowsecurity, c.relforcerowsecurity, pg_get_userbyid(c.relowner) "
        "FROM pg_class c WHERE c.oid = to_regclass(%s) AND c.relkind IN ('r', 'p')",
        [sql.qn(table)],
    )
    row = cursor.fetchone()
    if row is None:
        return TableFacts(name=table, exists=False, model=model)
    oid, rls_enabled, rls_forced, owner = row
    if role is None:
        cursor.execute("SELECT current_user")
        role = cursor.fetchone()[0]
    role_oid = _role_oid(cursor, role)
    system_oid = _role_oid(cursor, system_role)

    cursor.execute(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        [oid],
    )
    columns = {name: type_ for name, type_ in cursor.fetchall()}

    policies = _policies(cursor, [oid], role_oid, system_oid).get(oid, ())

    cursor.execute(
        "SELECT t.tgname, p.proname, t.tgenabled <> 'D' FROM pg_trigger t "
        "JOIN pg_proc p ON p.oid = t.tgfoid WHERE t.tgrelid = %s AND NOT t.tgisinternal "
        "ORDER BY t.tgname",
        [oid],
    )
    triggers = tuple(
        (name, function, bool(enabled)) for name, function, enabled in cursor.fetchall()
    )

    cursor.execute(
        """
        SELECT ic.relname, i.indisunique, i.indisprimary, i.indpred IS NOT NULL,
          ARRAY(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(n, o)
                LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n
                WHERE k.o <= i.indnkeyatts ORDER BY k.o)::text[],
          pg_get_indexdef(i.indexrelid)
        FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
        WHERE i.indrelid = %s ORDER BY ic.relname
        """,
        [oid],
    )
    indexes = tuple(
        IndexFacts(
            name=name,
            columns=tuple(cols),
            unique=bool(unique),
            primary=bool(primary),
            partial=bool(partial),
            definition=definition,
        )
        for name, unique, primary, partial, cols, definition in cursor.fetchall()
    )

    cursor.execute(
        """
        SELECT con.conname, rc.relname::text,
          ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY AS k(n, o)
                JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n
                ORDER BY k.o)::text[],
          ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY AS k(n, o)
                JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n
                ORDER BY k.o)::text[]
        FROM pg_constraint con JOIN pg_class rc ON rc.oid = con.confrelid
        WHERE con.conrelid = %s AND con.contype = 'f' ORDER BY con.conname
        """,
        [oid],
    )
    foreign_keys = tuple(
        ForeignKeyFacts(name=name, columns=tuple(cols), ref_table=ref, ref_columns=tuple(ref_cols))
        for name, ref, cols, ref_cols in cursor.fetchall()
    )

    return TableFacts(
        name=table,
        exists=True,
        model=model,
        columns=columns,
        owner=owner,
        rls_enabled=bool(rls_enabled),
        rls_forced=bool(rls_forced),
        policies=policies,
        triggers=triggers,
        indexes=indexes,
        foreign_keys=foreign_keys,
        runtime_privileges=_privileges(cursor, role_oid, oid),
        system_privileges=_privileges(cursor, system_oid, oid),
    )


def _policies(
    cursor: Any, table_oids: list[int], role_oid: int | None, system_oid: int | None
) -> dict[int, tuple[PolicyFacts, ...]]:
    """The policies of each of ``table_oids``, judged against the runtime and system roles."""
    cursor.execute(
        """
        SELECT p.polrelid, p.polname, p.polcmd::text, p.polpermissive,
          ARRAY(SELECT CASE WHEN r = 0 THEN 'public' ELSE pg_get_userbyid(r)::text END
                FROM unnest(p.polroles) AS r)::text[],
          pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid),
          EXISTS (SELECT 1 FROM unnest(p.polroles) AS r
                  WHERE r = 0 OR pg_has_role(%s::oid, r, 'USAGE')),
          EXISTS (SELECT 1 FROM unnest(p.polroles) AS r WHERE r <> 0 AND r = %s::oid)
        FROM pg_policy p WHERE p.polrelid = ANY(%s::oid[]) ORDER BY p.polrelid, p.polname
        """,
        [role_oid, system_oid, table_oids],
    )
    found: dict[int, tuple[PolicyFacts, ...]] = {}
    rows = cursor.fetchall()
    for relid, name, cmd, permissive, roles, using, with_check, runtime, system in rows:
        policy = PolicyFacts(
            name=name,
            command=_COMMANDS.get(cmd, cmd),
            permissive=bool(permissive),
            roles=tuple(roles),
            using=using,
            with_check=with_check,
            applies_to_runtime=bool(runtime),
            names_system_role=bool(system),
        )
        found[relid] = (*found.get(relid, ()), policy)
    return found


def _privileges(cursor: Any, role_oid: int | None, table_oid: int) -> frozenset[str]:
    if role_oid is None:
        return frozenset()
    names = (*DML, "TRUNCATE")
    cursor.execute(
        "SELECT " + ", ".join("has_table_privilege(%s::oid, %s::oid, %s)" for _ in names),
        [value for name in names for value in (role_oid, table_oid, name)],
    )
    return frozenset(name for name, held in zip(names, cursor.fetchone(), strict=True) if held)


def shared_tables_referencing(cursor: Any, tables: Iterable[str]) -> list[tuple[str, str, str]]:
    """``(table, constraint, referenced)`` for foreign keys from any table into ``tables``."""
    cursor.execute(
        """
        SELECT c.relname::text, con.conname::text, rc.relname::text
        FROM pg_constraint con
        JOIN pg_class c ON c.oid = con.conrelid
        JOIN pg_class rc ON rc.oid = con.confrelid
        WHERE con.contype = 'f' AND rc.relname = ANY(%s) AND pg_table_is_visible(c.oid)
          AND pg_table_is_visible(rc.oid)
        ORDER BY 1, 2
        """,
        [list(tables)],
    )
    return list(cursor.fetchall())


def _secured_join_table(cursor: Any, table: str) -> bool:
    """True for a many-to-many join table under its join policy (TenantJoinRLS): its links are
    confined by the tenant rows they join, so it is not shared."""
    cursor.execute(
        """
        SELECT c.relrowsecurity AND c.relforcerowsecurity AND EXISTS (
            SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = %s)
        FROM pg_class c WHERE c.oid = to_regclass(%s)
        """,
        [sql.tenant_policy_name(table), sql.qn(table)],
    )
    row = cursor.fetchone()
    return bool(row and row[0])


# User schemas: neither information_schema nor pg_* (pg_catalog, pg_toast, pg_temp_N, ...).
_USER_SCHEMA = "n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%%'"


def _not_extension_member(classid: str, alias: str) -> str:
    """A condition leaving out objects that an extension installed (the extension owns them)."""
    return (
        f"NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = '{classid}'::regclass "
        f"AND e.objid = {alias}.oid AND e.deptype = 'e')"
    )


def _grantees(acl: str, default: str, owner: str, privilege: str) -> str:
    """The grantees through which the runtime role (first parameter) holds ``privilege``."""
    return (
        "ARRAY(SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' "
        "ELSE pg_get_userbyid(a.grantee)::text END "
        f"FROM aclexplode(COALESCE({acl}, acldefault('{default}', {owner}))) AS a "
        f"WHERE a.privilege_type = '{privilege}' "
        "AND (a.grantee = 0 OR pg_has_role(%s::oid, a.grantee, 'USAGE')))::text[]"
    )


def inspect_bypasses(
    cursor: Any, tables: Iterable[str], system_role: str, role: str | None = None
) -> BypassFacts:
    """Read views, materialized views and functions, and the tables whose rows they may show.

    Those tables are ``tables``, the tenants table and the tables left out through
    ``exempt_table``, whose rows belong to tenants too.
    """
    if role is None:
        cursor.execute("SELECT current_user")
        role = cursor.fetchone()[0]
    role_oid = _role_oid(cursor, role)
    cursor.execute("SELECT current_setting('server_version_num')::int")
    server_version = cursor.fetchone()[0]

    # The tenants table too: a policy may hide other tenants' rows of it as well.
    names = list(dict.fromkeys([*tables, _tenants_table(), *sorted(EXEMPT_TABLES)]))
    cursor.execute(
        """
        SELECT c.oid, t.name, pg_get_userbyid(c.relowner), c.relrowsecurity,
          c.relforcerowsecurity, n.nspname
        FROM unnest(%s::text[], %s::text[]) AS t(name, quoted)
        JOIN pg_class c ON c.oid = to_regclass(t.quoted) AND c.relkind IN ('r', 'p')
        JOIN pg_namespace n ON n.oid = c.relnamespace
        """,
        [names, [sql.qn(name) for name in names]],
    )
    rows = cursor.fetchall()
    suite_schema, suite_owner = next(
        ((row[5], row[2]) for row in rows if row[1] == _tenants_table()), ("", "")
    )
    policies = _policies(cursor, [row[0] for row in rows], role_oid, _role_oid(cursor, system_role))
    guarded = {
        oid: GuardedTable(
            oid=oid,
            name=name,
            owner=owner,
            rls_enabled=bool(enabled),
            rls_forced=bool(forced),
            policies=policies.get(oid, ()),
        )
        for oid, name, owner, enabled, forced, _schema in rows
    }

    # pg_options_to_table yields security_invoker only on PostgreSQL 15+, where it exists.
    cursor.execute(
        f"""
        SELECT c.oid, c.oid::regclass::text, c.relname, c.relkind = 'm',
          pg_get_userbyid(c.relowner),
          COALESCE((SELECT o.option_value::boolean FROM pg_options_to_table(c.reloptions) AS o
                    WHERE o.option_name = 'security_invoker'), false),
          ARRAY(SELECT DISTINCT d.refobjid FROM pg_rewrite rw
                JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = rw.oid
                WHERE rw.ev_class = c.oid AND d.refclassid = 'pg_class'::regclass
                  AND d.refobjid <> c.oid)::oid[],
          CASE WHEN has_any_column_privilege(%s::oid, c.oid, 'SELECT')
               THEN {_grantees("c.relacl", "r", "c.relowner", "SELECT")} END
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('v', 'm') AND {_USER_SCHEMA}
          AND {_not_extension_member("pg_class", "c")}
        ORDER BY 2
        """,
        [role_oid, role_oid],
    )
    relations = {
        oid: RelationFacts(
            oid=oid,
            name=name,
            relname=relname,
            materialized=bool(materialized),
            owner=owner,
            security_invoker=bool(invoker),
            reads=tuple(reads),
            runtime_grantees=_held(grantees, role),
        )
        for oid, name, relname, materialized, owner, invoker, reads, grantees in cursor.fetchall()
    }

    # C and internal functions are left out: their source is a symbol name, not SQL.
    cursor.execute(
        f"""
        SELECT p.oid, n.nspname, p.proname, p.oid::regprocedure::text,
          pg_get_userbyid(p.proowner), p.prosecdef, l.lanname, COALESCE(p.prosrc, ''),
          p.prokind = 'p',
          ARRAY(SELECT DISTINCT d.refobjid FROM pg_depend d
                WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                  AND d.refclassid = 'pg_class'::regclass)::oid[],
          ARRAY(SELECT DISTINCT d.refobjid FROM pg_depend d
                WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                  AND d.refclassid = 'pg_proc'::regclass AND d.refobjid <> p.oid)::oid[],
          CASE WHEN has_function_privilege(%s::oid, p.oid, 'EXECUTE')
               THEN {_grantees("p.proacl", "f", "p.proowner", "EXECUTE")} END
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        JOIN pg_language l ON l.oid = p.prolang
        WHERE p.prokind IN ('f', 'p') AND l.lanname NOT IN ('c', 'internal') AND {_USER_SCHEMA}
          AND {_not_extension_member("pg_proc", "p")}
        ORDER BY 4
        """,
        [role_oid, role_oid],
    )
    functions = {
        row[0]: FunctionFacts(
            oid=row[0],
            schema=row[1],
            name=row[2],
            signature=row[3],
            owner=row[4],
            security_definer=bool(row[5]),
            language=row[6],
            source=row[7],
            procedure=bool(row[8]),
            reads=tuple(row[9]),
            calls=tuple(row[10]),
            runtime_grantees=_held(row[11], role),
        )
        for row in cursor.fetchall()
    }

    owner_names = {role, *(r.owner for r in relations.values())}
    owner_names |= {f.owner for f in functions.values()}
    cursor.execute(
        """
        SELECT r.rolname, r.rolsuper, r.rolbypassrls,
          ARRAY(SELECT g.rolname::text FROM pg_roles g WHERE pg_has_role(r.oid, g.oid, 'USAGE'))
        FROM pg_roles r WHERE r.rolname = ANY(%s::text[])
        """,
        [sorted(owner_names)],
    )
    owners = {
        name: OwnerFacts(name, bool(superuser), bool(bypassrls), frozenset(member_of))
        for name, superuser, bypassrls, member_of in cursor.fetchall()
    }

    return BypassFacts(
        tables=guarded,
        relations=relations,
        functions=functions,
        owners=owners,
        server_version=server_version,
        suite_schema=suite_schema,
        suite_owner=suite_owner,
    )


def _held(grantees: list[str] | None, role: str) -> tuple[str, ...]:
    """Grantees of a privilege the runtime holds; its own name when only column grants give it."""
    if grantees is None:
        return ()
    return tuple(grantees) or (role,)


# --- judging -------------------------------------------------------------------------------------


def _setup_hint(role: str) -> str:
    return f"Run `manage.py better_tenant init --app-role {role}` as the owner of the tables."


def evaluate_role(facts: RoleFacts) -> list[Finding]:
    section = f"role {facts.name}"
    found = []
    if facts.superuser or facts.bypassrls:
        what = "a superuser" if facts.superuser else "a role with BYPASSRLS"
        found.append(
            Finding(
                ERROR,
                section,
                "role_bypasses_rls",
                f"the application connects as {what}: PostgreSQL skips every RLS policy for it, "
                "so every tenant sees every row",
                "Connect as a role created with NOSUPERUSER NOBYPASSRLS that does not own the "
                "tables (DATABASE_URL), and run migrations as the owner (DATABASE_OWNER_URL).",
            )
        )
    else:
        found.append(Finding(OK, section, "role_bypasses_rls", "not a superuser, no BYPASSRLS"))
    if not facts.system_role_exists:
        found.append(
            Finding(
                ERROR,
                section,
                "system_role_missing",
                f"the system role {facts.system_role} does not exist, so run_as_system() fails",
                _setup_hint(facts.name),
            )
        )
        return found
    if facts.superuser:
        return found
    if facts.inherits_system_role:
        found.append(
            Finding(
                ERROR,
                section,
                "role_inherits_system",
                f"{facts.name} inherits the privileges of {facts.system_role}, so the system "
                "policy (USING true) applies to every query and tenants see each other's rows",
                f"Make the membership non-inheriting: on PostgreSQL 16+ `GRANT {facts.system_role} "
                f"TO {facts.name} WITH INHERIT FALSE, SET TRUE` (after REVOKE), before 16 "
                f"`ALTER ROLE {facts.name} NOINHERIT`.",
            )
        )
    if not facts.can_set_system_role:
        found.append(
            Finding(
                ERROR,
                section,
                "system_role_unreachable",
                f"{facts.name} may not SET ROLE {facts.system_role}, so run_as_system() "
                "(tenant API, admin, seed) fails",
                _setup_hint(facts.name),
            )
        )
    if facts.can_set_system_role and not facts.inherits_system_role:
        found.append(
            Finding(
                OK,
                section,
                "system_role_membership",
                f"may enter {facts.system_role} for run_as_system() without inheriting it",
            )
        )
    return found


def _mentions_tenant(expression: str | None) -> bool:
    return expression is not None and "tenant_id" in expression and sql.reads_tenant(expression)


_CAST_RE = re.compile(r"\(?\btenant_id\)?\s*::")
_OTHER_SETTING_RE = re.compile(r"current_setting\('([^']+)'")


def policy_problems(expression: str) -> list[tuple[str, str]]:
    """``(code, reason)`` for tenant-policy shapes that defeat the tenant_id index or isolation."""
    problems = []
    if _CAST_RE.search(expression):
        problems.append(
            (
                "policy_casts_column",
                "casts the tenant_id column (e.g. `(tenant_id)::text`), so the planner cannot use "
                "an index on tenant_id and every query scans the whole table",
            )
        )
    others = sorted({s for s in _OTHER_SETTING_RE.findall(expression) if s != sql.SETTING})
    if re.search(r"\bOR\b", expression):
        if others:
            problems.append(
                (
                    "policy_or_bypass",
                    f"ORs a bypass setting ({', '.join(others)}) onto the tenant comparison: the "
                    "OR stops the planner from using the tenant_id index, and any code that sets "
                    "that setting reads every tenant",
                )
            )
        else:
            problems.append(
                (
                    "policy_or",
                    "ORs another condition onto the tenant comparison, which widens what a tenant "
                    "sees and stops the planner from using the tenant_id index",
                )
            )
    return problems


def _policy_hint(table: str) -> str:
    return (
        f"Recreate the policy on {table} with `tenant_id = {sql.POLICY_TENANT}` in both USING "
        "and WITH CHECK; system mode needs no OR, it has its own policy TO the system role."
    )


def evaluate_table(
    facts: TableFacts,
    role: str,
    system_role: str,
    tenant_table_names: Iterable[str],
) -> list[Finding]:
    """Judge one tenant table."""
    section = f"table {facts.name}"
    if not facts.exists:
        return [
            Finding(
                ERROR,
                section,
                "table_missing",
                f"table not found (model {facts.model})",
                "Run `manage.py migrate`.",
            )
        ]
    if not facts.has_tenant_id:
        return [
            Finding(
                ERROR,
                section,
                "tenant_id_missing",
                "column tenant_id not found",
                "Run `manage.py migrate`; for a table outside Django add it with `ALTER TABLE "
                f"{sql.qn(facts.name)} ADD COLUMN tenant_id uuid NOT NULL REFERENCES tenants(id)`.",
            )
        ]
    found = [Finding(OK, section, "tenant_id_column", "tenant_id column")]
    if facts.columns["tenant_id"] != "uuid":
        found.append(
            Finding(
                ERROR,
                section,
                "tenant_id_type",
                f"tenant_id is {facts.columns['tenant_id']}, not uuid",
                "Change the column to uuid referencing tenants(id).",
            )
        )
    if not facts.rls_enabled and not facts.policies:
        hint = (
            "Run `manage.py makemigrations` and `manage.py migrate`."
            if facts.model
            else f"Run `manage.py better_tenant add-table {facts.name} -o <app>/migrations/` "
            "and then `manage.py migrate`."
        )
        found.append(
            Finding(
                ERROR,
                section,
                "rls_missing",
                "has a tenant_id column but no row-level security: every tenant sees every row",
                hint,
            )
        )
        found += _evaluate_privileges(facts, role, system_role)
        return found

    if facts.rls_enabled and facts.rls_forced:
        found.append(Finding(OK, section, "rls_enabled", "row-level security enabled and forced"))
    if not facts.rls_enabled:
        found.append(
            Finding(
                ERROR,
                section,
                "rls_not_enabled",
                "ROW LEVEL SECURITY not enabled: the policies are ignored",
                f"ALTER TABLE {sql.qn(facts.name)} ENABLE ROW LEVEL SECURITY;",
            )
        )
    if not facts.rls_forced:
        found.append(
            Finding(
                ERROR,
                section,
                "rls_not_forced",
                "FORCE ROW LEVEL SECURITY not set: the owner of the table bypasses the policies",
                f"ALTER TABLE {sql.qn(facts.name)} FORCE ROW LEVEL SECURITY;",
            )
        )
    found += _evaluate_policies(facts, role, system_role)

    if facts.has_trigger:
        found.append(Finding(OK, section, "trigger", f"trigger {sql.TRIGGER_NAME}"))
    else:
        found.append(
            Finding(
                ERROR,
                section,
                "trigger_missing",
                f"trigger {sql.TRIGGER_NAME} not found (or disabled): inserts without tenant_id "
                "are not filled from the current tenant",
                f"CREATE TRIGGER {sql.TRIGGER_NAME} BEFORE INSERT ON {sql.qn(facts.name)} "
                f"FOR EACH ROW EXECUTE FUNCTION {sql.TRIGGER_FUNCTION}();",
            )
        )

    if any(i.columns and i.columns[0] == "tenant_id" and not i.partial for i in facts.indexes):
        found.append(Finding(OK, section, "tenant_index", "index led by tenant_id"))
    else:
        found.append(
            Finding(
                WARNING,
                section,
                "tenant_index_missing",
                "no index led by tenant_id: every query the policy filters scans the table",
                f"CREATE INDEX ON {sql.qn(facts.name)} (tenant_id, ...), or a UNIQUE "
                "(tenant_id, id) key, which composite foreign keys also need.",
            )
        )

    found += _evaluate_foreign_keys(facts, set(tenant_table_names))
    found += _evaluate_unique(facts)
    found += _evaluate_privileges(facts, role, system_role)
    return found


def _evaluate_policies(facts: TableFacts, role: str, system_role: str) -> list[Finding]:
    section = f"table {facts.name}"
    found = []
    runtime = [p for p in facts.policies if p.applies_to_runtime and p.permissive]
    if not runtime:
        found.append(
            Finding(
                ERROR,
                section,
                "policy_missing",
                f"no RLS policy applies to {role}: every query returns no rows",
                _policy_hint(facts.name),
            )
        )
    for policy in runtime:
        label = f"policy {policy.name}"
        needs_using = policy.command in ("ALL", "SELECT", "UPDATE", "DELETE")
        needs_check = policy.command in ("ALL", "INSERT", "UPDATE")
        problems = []
        if needs_using and not policy.using:
            problems.append(
                ("policy_no_using", "has no USING expression, so reads are not filtered")
            )
        if needs_check and not policy.with_check:
            problems.append(
                (
                    "policy_no_with_check",
                    "has no WITH CHECK expression, so writes may carry another tenant's id",
                )
            )
        expressions = [e for e in (policy.using, policy.with_check) if e]
        if expressions and not all(_mentions_tenant(e) for e in expressions):
            problems.append(
                (
                    "policy_not_tenant",
                    f"applies to {role} without comparing tenant_id to the tenant in scope, so it "
                    "opens rows of every tenant (permissive policies are ORed together)",
                )
            )
        seen = set()
        for expression in expressions:
            for code, reason in policy_problems(expression):
                if code not in seen:
                    seen.add(code)
                    problems.append((code, reason))
        for code, reason in problems:
            found.append(
                Finding(ERROR, section, code, f"{label} {reason}", _policy_hint(facts.name))
            )
        if not problems:
            found.append(
                Finding(
                    OK, section, "policy", f"{label} ({policy.command}) has USING and WITH CHECK"
                )
            )
    system = [p for p in facts.policies if p.names_system_role and p.permissive]
    if system:
        found.append(
            Finding(OK, section, "system_policy", f"policy {system[0].name} for {system_role}")
        )
    else:
        found.append(
            Finding(
                ERROR,
                section,
                "system_policy_missing",
                f"no policy TO {system_role}: run_as_system() sees no rows of this table",
                f"CREATE POLICY {sql.qn(sql.system_policy_name(facts.name))} ON "
                f"{sql.qn(facts.name)} FOR ALL TO {sql.qn(system_role)} USING "
                f"{sql.SYSTEM_CHECK} WITH CHECK {sql.SYSTEM_CHECK};",
            )
        )
    return found


def _evaluate_foreign_keys(facts: TableFacts, tenant_table_names: set[str]) -> list[Finding]:
    section = f"table {facts.name}"
    found = []
    composite = {
        (fk.ref_table, frozenset(zip(fk.columns, fk.ref_columns, strict=True)))
        for fk in facts.foreign_keys
        if "tenant_id" in fk.columns
    }
    for fk in facts.foreign_keys:
        if fk.ref_table not in tenant_table_names or "tenant_id" in fk.columns:
            continue
        wanted = frozenset(
            {("tenant_id", "tenant_id"), *zip(fk.columns, fk.ref_columns, strict=True)}
        )
        cols = ", ".join(fk.columns)
        if (fk.ref_table, wanted) in composite:
            found.append(
                Finding(
                    OK,
                    section,
                    "composite_fk",
                    f"({cols}) -> {fk.ref_table} is covered by a (tenant_id, {cols}) key",
                )
            )
            continue
        ref_cols = ", ".join(fk.ref_columns)
        found.append(
            Finding(
                ERROR,
                section,
                "plain_fk",
                f"foreign key {fk.name} ({cols}) -> {fk.ref_table} has no composite "
                f"(tenant_id, {cols}) key: a row of one tenant can reference another tenant's row",
                "For a TenantModel list the field in TenantRLS foreign_keys and run "
                "makemigrations; "
                f"otherwise ALTER TABLE {sql.qn(facts.name)} ADD FOREIGN KEY (tenant_id, {cols}) "
                f"REFERENCES {sql.qn(fk.ref_table)} (tenant_id, {ref_cols}); "
                f"({fk.ref_table} needs UNIQUE (tenant_id, {ref_cols})).",
            )
        )
    return found


def _evaluate_unique(facts: TableFacts) -> list[Finding]:
    section = f"table {facts.name}"
    found = []
    for index in facts.indexes:
        if not index.unique or index.primary or "tenant_id" in index.columns:
            continue
        if None in index.columns and "tenant_id" in index.definition:
            continue
        cols = ", ".join(c or "<expression>" for c in index.columns)
        found.append(
            Finding(
                WARNING,
                section,
                "unique_without_tenant",
                f"unique {index.name} ({cols}) spans all tenants: one tenant's value blocks "
                "another's, and the conflict tells it that the value exists",
                f"Make it UNIQUE (tenant_id, {cols}) unless the value must be global.",
            )
        )
    return found


def _evaluate_privileges(facts: TableFacts, role: str, system_role: str) -> list[Finding]:
    section = f"table {facts.name}"
    found = []
    if facts.owner == role:
        found.append(
            Finding(
                WARNING,
                section,
                "runtime_owns_table",
                f"{role} owns this table: it may ALTER or DISABLE row-level security on it",
                f"ALTER TABLE {sql.qn(facts.name)} OWNER TO <owner role>; and let the application "
                "connect as a role that owns nothing.",
            )
        )
    found += _truncate_finding(
        facts, role, ", which ignores row-level security and empties every tenant"
    )
    missing = [p for p in DML if p not in facts.runtime_privileges]
    if missing and facts.owner != role:
        found.append(
            Finding(
                ERROR,
                section,
                "runtime_privileges",
                f"{role} lacks {', '.join(missing)}",
                _setup_hint(role),
            )
        )
    found += _system_privileges_finding(
        facts,
        system_role,
        ": run_as_system() fails on this table",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON {sql.qn(facts.name)} TO {sql.qn(system_role)};",
    )
    if not any(f.status != OK for f in found):
        found.append(
            Finding(OK, section, "privileges", f"{role} and {system_role} have DML, no TRUNCATE")
        )
    return found


def _truncate_finding(facts: TableFacts, role: str, tail: str) -> list[Finding]:
    if "TRUNCATE" not in facts.runtime_privileges:
        return []
    return [
        Finding(
            ERROR,
            f"table {facts.name}",
            "runtime_truncate",
            f"{role} has TRUNCATE{tail}",
            f"REVOKE TRUNCATE ON {sql.qn(facts.name)} FROM {sql.qn(role)};",
        )
    ]


def _system_privileges_finding(
    facts: TableFacts, system_role: str, tail: str, hint: str
) -> list[Finding]:
    missing = [p for p in DML if p not in facts.system_privileges]
    if not missing:
        return []
    return [
        Finding(
            ERROR,
            f"table {facts.name}",
            "system_privileges",
            f"{system_role} lacks {', '.join(missing)}{tail}",
            hint,
        )
    ]


def evaluate_tenants_table(facts: TableFacts, role: str, system_role: str) -> list[Finding]:
    section = f"table {facts.name}"

    def error(
        code: str, message: str, hint: str = "Run `manage.py migrate better_tenant`."
    ) -> Finding:
        return Finding(ERROR, section, code, message, hint)

    if not facts.exists:
        return [error("tenants_missing", "tenants table not found")]
    found = []
    missing = [c for c in TENANTS_COLUMNS if c not in facts.columns]
    if missing:
        found.append(
            error("tenants_columns", f"tenants table missing column: {', '.join(missing)}")
        )
    else:
        found.append(
            Finding(OK, section, "tenants_columns", f"columns {', '.join(TENANTS_COLUMNS)}")
        )
    if facts.rls_enabled and facts.rls_forced:
        found.append(Finding(OK, section, "rls_enabled", "row-level security enabled and forced"))
    else:
        flags = [
            name
            for name, on in (("ENABLE", facts.rls_enabled), ("FORCE", facts.rls_forced))
            if not on
        ]
        found.append(
            error(
                "rls_not_enabled",
                f"{' and '.join(flags)} ROW LEVEL SECURITY not set",
                "Run `manage.py migrate better_tenant` (InstallTenantRLS sets both).",
            )
        )
    names = {p.name: p for p in facts.policies}
    read = names.get(sql.TENANTS_READ_POLICY)
    write = names.get(sql.TENANTS_WRITE_POLICY)
    if read is None or write is None:
        absent = [n for n in (sql.TENANTS_READ_POLICY, sql.TENANTS_WRITE_POLICY) if n not in names]
        found.append(error("tenants_policies", f"policy missing: {', '.join(absent)}"))
    else:
        found.append(
            Finding(OK, section, "tenants_policies", f"policies {read.name}, {write.name}")
        )
    if write is not None and not write.names_system_role:
        found.append(
            error(
                "tenants_write_role",
                f"policy {write.name} is not granted TO {system_role}",
                "Recreate it with `manage.py migrate better_tenant zero` and `migrate`.",
            )
        )
    open_writes = [
        p.name
        for p in facts.policies
        if p.permissive and p.applies_to_runtime and p.command != "SELECT"
    ]
    if open_writes:
        found.append(
            error(
                "tenants_writable",
                f"policy {', '.join(open_writes)} lets {role} change tenants outside "
                "run_as_system()",
                f"Grant write policies on tenants only TO {system_role}.",
            )
        )
    if "SELECT" not in facts.runtime_privileges:
        found.append(
            error(
                "tenants_unreadable",
                f"{role} cannot read the tenants table, so slugs cannot be resolved",
                _setup_hint(role),
            )
        )
    found += _system_privileges_finding(
        facts,
        system_role,
        " on tenants: the tenant API fails",
        "Run `manage.py migrate better_tenant`.",
    )
    found += _truncate_finding(facts, role, " on tenants, which ignores row-level security")
    return found


# --- views and functions that read tenant tables past row-level security ------------------------

BYPASSES = "views and functions"
CERTAIN = "certain: a dependency recorded in pg_depend"
LIKELY = "likely: its source names it, a text match the catalogs cannot confirm"
_DYNAMIC_RE = re.compile(r"\bEXECUTE\b", re.IGNORECASE)


def rls_bypass_reason(owner: OwnerFacts, table: GuardedTable) -> str | None:
    """Why row-level security lets ``owner`` read every tenant's rows of ``table``, or None.

    PostgreSQL checks the tables of a view as the view's owner (unless the view is
    ``security_invoker``) and runs a SECURITY DEFINER function as its owner, so whatever the owner
    may read, every reader of the view or caller of the function reads too.
    """
    if not hides_rows_from_runtime(table):
        return None  # nothing to bypass; the table's own finding says what is wrong
    if owner.superuser:
        return "is a superuser, which skips every policy"
    if owner.bypassrls:
        return "has BYPASSRLS, which skips every policy"
    if table.owner in owner.member_of and not table.rls_forced:
        owns = (
            "owns it"
            if table.owner == owner.name
            else f"has the privileges of its owner {table.owner}"
        )
        return f"{owns}, and an owner skips its policies without FORCE ROW LEVEL SECURITY"
    reads = [p for p in table.policies if p.command in ("ALL", "SELECT")]
    if any(
        not p.permissive
        and _filters_by_tenant(p.using)
        and ("public" in p.roles or owner.member_of.intersection(p.roles))
        for p in reads
    ):
        return None  # a restrictive tenant policy filters the owner whatever else it is granted
    for policy in (p for p in reads if p.permissive):
        granted = sorted(owner.member_of.intersection(policy.roles))
        if granted and not _filters_by_tenant(policy.using):
            if owner.name in granted:
                return f"is granted its policy {policy.name}, which does not filter by tenant"
            return (
                f"has the privileges of {granted[0]}, and its policy {policy.name} for "
                f"{granted[0]} does not filter by tenant"
            )
    return None


def _filters_by_tenant(expression: str | None) -> bool:
    # Tenant tables compare tenant_id, the tenants table its id: both to the tenant setting.
    return expression is not None and sql.reads_tenant(expression)


def hides_rows_from_runtime(table: GuardedTable) -> bool:
    """Whether row-level security keeps other tenants' rows of ``table`` from the runtime role.

    Not when RLS is off, nor when a permissive read policy of the runtime role does not filter by
    tenant (the tenants table read by everyone, say): then no view or function reveals more.
    """
    return table.rls_enabled and not any(
        p.permissive
        and p.applies_to_runtime
        and p.command in ("ALL", "SELECT")
        and not _filters_by_tenant(p.using)
        for p in table.policies
    )


def _names_re(names: Iterable[str], suffix: str = "") -> re.Pattern[str] | None:
    """A pattern for any of ``names`` as a whole identifier, quoted or not."""
    alternatives = sorted({re.escape(n) for n in names}, key=len, reverse=True)
    if not alternatives:
        return None
    return re.compile(
        r'(?<![\w$])"?(' + "|".join(alternatives) + r')"?(?![\w$])' + suffix, re.IGNORECASE
    )


def _named(pattern: re.Pattern[str] | None, oids: dict[str, list[int]], source: str) -> list[int]:
    """The oids of the objects whose names ``pattern`` finds in ``source``."""
    if pattern is None:
        return []
    names = {match.group(1).lower() for match in pattern.finditer(source)}
    return [oid for name in sorted(names) for oid in oids.get(name, ())]


class _Exposures:
    """What each view and function shows of tenant tables past row-level security."""

    def __init__(self, facts: BypassFacts, exempt: dict[str, str]) -> None:
        self.facts = facts
        self.exempt = exempt
        self._relations: dict[int, list[str]] = {}
        self._functions: dict[int, list[tuple[str, str]]] = {}
        # Function bodies are text: tables, views and functions are found in them by name.
        self._relation_oids: dict[str, list[int]] = {}
        for oid, table in facts.tables.items():
            self._relation_oids.setdefault(table.name.lower(), []).append(oid)
        for oid, relation in facts.relations.items():
            self._relation_oids.setdefault(relation.relname.lower(), []).append(oid)
        self._function_oids: dict[str, list[int]] = {}
        for oid, function in facts.functions.items():
            self._function_oids.setdefault(function.name.lower(), []).append(oid)
        self._relation_re = _names_re(self._relation_oids)
        self._call_re = _names_re(self._function_oids, r"\s*\(")

    def owner(self, name: str) -> OwnerFacts:
        return self.facts.owners.get(name, OwnerFacts(name, member_of=frozenset({name})))

    def is_exempt(self, function: FunctionFacts) -> bool:
        return (
            function.security_definer
            and function.name in self.exempt
            and function.schema == self.facts.suite_schema
            and function.owner == self.facts.suite_owner
        )

    def read_as(self, role: str, oids: Iterable[int], via: tuple[str, ...] = ()) -> list[str]:
        """One clause per tenant table that ``role`` reads past row-level security via ``oids``."""
        clauses = []
        for oid in oids:
            table = self.facts.tables.get(oid)
            relation = self.facts.relations.get(oid)
            if table is not None:
                reason = rls_bypass_reason(self.owner(role), table)
                if reason:
                    through = f" (through {', '.join(via)})" if via else ""
                    clauses.append(f"{table.name}{through} as {role}, who {reason}")
            elif relation is not None and relation.security_invoker and not relation.materialized:
                # A security_invoker view reads as whoever reads it: here, still ``role``.
                if relation.name not in via:
                    clauses += self.read_as(role, relation.reads, (*via, relation.name))
            elif relation is not None and self.relation(relation):
                clauses.append(
                    f"{relation.name}, which shows every tenant's rows (see its finding)"
                )
        return clauses

    def relation(self, relation: RelationFacts) -> list[str]:
        """What ``relation`` exposes: table names for a materialized view, clauses for a view."""
        if relation.oid not in self._relations:
            self._relations[relation.oid] = []  # a guard against cycles while it is computed
            if relation.materialized:
                reached = self._tables_under(relation.reads, set())
                found = sorted(self.facts.tables[oid].name for oid in reached)
            elif relation.security_invoker:
                found = []  # its readers' own row-level security applies
            else:
                found = self.read_as(relation.owner, relation.reads)
            self._relations[relation.oid] = found
        return self._relations[relation.oid]

    def _tables_under(self, oids: Iterable[int], seen: set[int]) -> set[int]:
        """Tenant tables that ``oids`` read, through views and materialized views of any kind."""
        found: set[int] = set()
        for oid in oids:
            if oid in seen:
                continue
            seen.add(oid)
            if oid in self.facts.tables:
                if hides_rows_from_runtime(self.facts.tables[oid]):
                    found.add(oid)
            elif oid in self.facts.relations:
                found |= self._tables_under(self.facts.relations[oid].reads, seen)
        return found

    def function(self, function: FunctionFacts) -> list[tuple[str, str]]:
        """``(clause, certainty)`` for what the SECURITY DEFINER ``function`` reads past RLS."""
        if function.oid not in self._functions:
            self._functions[function.oid] = []
            self._functions[function.oid] = self._body(function, function.owner, {function.oid})
        return self._functions[function.oid]

    def _body(self, function: FunctionFacts, role: str, seen: set[int]) -> list[tuple[str, str]]:
        found = [(clause, CERTAIN) for clause in self.read_as(role, function.reads)]
        named = _named(self._relation_re, self._relation_oids, function.source)
        unrecorded = [oid for oid in named if oid not in function.reads]
        found += [(clause, LIKELY) for clause in self.read_as(role, unrecorded)]
        called = _named(self._call_re, self._function_oids, function.source)
        calls = [(oid, CERTAIN) for oid in function.calls]
        calls += [(oid, LIKELY) for oid in called if oid not in function.calls]
        for oid, certainty in calls:
            callee = self.facts.functions.get(oid)
            if callee is None or oid in seen:
                continue
            seen.add(oid)
            if callee.security_definer:
                if not self.is_exempt(callee) and self.function(callee):
                    clause = (
                        f"{callee.signature}, which reads every tenant's rows (see its finding)"
                    )
                    found.append((clause, certainty))
                continue
            # A function that is not SECURITY DEFINER runs as its caller: here, ``role``.
            for clause, inner in self._body(callee, role, seen):
                weaker = CERTAIN if CERTAIN == certainty == inner else LIKELY
                found.append((f"{clause}, inside {callee.signature}", weaker))
        return found

    def dynamic(self, function: FunctionFacts) -> tuple[str, list[str]] | None:
        """For a function running SQL built at run time: what its owner could read past RLS."""
        if function.language == "sql" or not _DYNAMIC_RE.search(function.source):
            return None
        owner = self.owner(function.owner)
        open_: dict[str, str] = {}
        for table in self.facts.tables.values():
            reason = rls_bypass_reason(owner, table)
            if reason:
                open_[table.name] = reason
        if not open_:
            return None
        names = sorted(open_)
        return open_[names[0]], names


def _grant_finding(
    status: str, section: str, role: str, grantees: tuple[str, ...], privilege: str, target: str
) -> list[Finding]:
    if not grantees:
        return []
    names = ", ".join(g if g == "PUBLIC" else sql.qn(g) for g in grantees)
    verb = "read" if privilege == "SELECT" else "call"
    reach = "every tenant's rows" if status == ERROR else "whatever it reads"
    return [
        Finding(
            status,
            section,
            "runtime_bypass_grant",
            f"{role} may {verb} it ({privilege} granted to {', '.join(grantees)}), so the "
            f"application reaches {reach} through it",
            f"REVOKE {privilege} ON {target} FROM {names};",
        )
    ]


def _view_hint(name: str, server_version: int) -> str:
    if server_version >= 150000:
        fix = (
            f"`ALTER VIEW {name} SET (security_invoker = true);` so that its tables are read as "
            "the querying role, under row-level security"
        )
    else:
        fix = (
            f"`ALTER VIEW {name} OWNER TO <a role without SUPERUSER or BYPASSRLS that owns no "
            "tenant table>;` (security_invoker needs PostgreSQL 15)"
        )
    return f"{fix}, or `DROP VIEW {name};`"


def evaluate_bypasses(
    facts: BypassFacts, role: str, exempt: dict[str, str] | None = None
) -> list[Finding]:
    """Judge views, materialized views and SECURITY DEFINER functions over tenant tables.

    ``exempt`` (default: those registered with ``exempt_function``) names the SECURITY DEFINER
    functions installed on purpose.
    """
    exposures = _Exposures(facts, EXEMPT_FUNCTIONS if exempt is None else exempt)
    found: list[Finding] = []
    for relation in facts.relations.values():
        found += _relation_findings(exposures, relation, role)
    for function in facts.functions.values():
        if function.security_definer:
            found += _function_findings(exposures, function, role)
    if not any(f.status != OK for f in found):
        found.append(
            Finding(
                OK,
                BYPASSES,
                "no_rls_bypass",
                "no view, materialized view or SECURITY DEFINER function reads tenant tables "
                "past row-level security",
            )
        )
    return found


def _relation_findings(exposures: _Exposures, relation: RelationFacts, role: str) -> list[Finding]:
    exposed = exposures.relation(relation)
    if not exposed:
        return []
    if relation.materialized:
        section = f"materialized view {relation.name}"
        finding = Finding(
            ERROR,
            section,
            "matview_bypasses_rls",
            f"stores rows of {', '.join(exposed)}, and a materialized view applies no row-level "
            "security when read: whoever may read it sees the rows of every tenant it holds",
            f"`DROP MATERIALIZED VIEW {relation.name};` and read the rows through a view that "
            "row-level security applies to (security_invoker = true on PostgreSQL 15+), or keep "
            "them in a tenant table with row-level security of its own.",
        )
    else:
        section = f"view {relation.name}"
        finding = Finding(
            ERROR,
            section,
            "view_bypasses_rls",
            f"reads {'; '.join(exposed)}: whoever may read this view sees every tenant's rows",
            _view_hint(relation.name, exposures.facts.server_version),
        )
    return [
        finding,
        *_grant_finding(ERROR, section, role, relation.runtime_grantees, "SELECT", relation.name),
    ]


def _function_findings(exposures: _Exposures, function: FunctionFacts, role: str) -> list[Finding]:
    target = f"{'PROCEDURE' if function.procedure else 'FUNCTION'} {function.signature}"
    if exposures.is_exempt(function):
        reason = exposures.exempt[function.name]
        return [
            Finding(OK, BYPASSES, "bypass_exempt", f"SECURITY DEFINER {target} is exempt: {reason}")
        ]
    section = f"function {function.signature}"
    hint = (
        f"`ALTER {target} SECURITY INVOKER;` so that it reads as its caller, under row-level "
        f"security, or `DROP {target};`. A narrow function that must read past row-level security "
        "on purpose is declared with `better_tenant.inspection.exempt_function()`."
    )
    if reads := exposures.function(function):
        by_certainty: dict[str, list[str]] = {}
        for clause, certainty in reads:
            if clause not in by_certainty.setdefault(certainty, []):
                by_certainty[certainty].append(clause)
        what = "; ".join(
            f"{'; '.join(clauses)} ({certainty})" for certainty, clauses in by_certainty.items()
        )
        finding = Finding(
            ERROR,
            section,
            "function_bypasses_rls",
            f"SECURITY DEFINER, so it runs as its owner; it reads {what}: whoever may call it "
            "sees every tenant's rows",
            hint,
        )
    elif dynamic := exposures.dynamic(function):
        reason, tables = dynamic
        more = f" (and {len(tables) - 1} more tenant tables)" if len(tables) > 1 else ""
        finding = Finding(
            WARNING,
            section,
            "function_may_bypass_rls",
            f"SECURITY DEFINER, so it runs as its owner {function.owner}, and it runs SQL built "
            "at run time (EXECUTE), whose tables the catalogs cannot show (possible, not "
            f"proven): should it read {tables[0]}{more}, {function.owner} {reason}",
            hint,
        )
    else:
        return []
    grant = _grant_finding(
        finding.status, section, role, function.runtime_grantees, "EXECUTE", target
    )
    return [finding, *grant]


# --- the live smoke test -------------------------------------------------------------------------


class _Rollback(Exception):
    """Raised to undo everything the smoke test wrote."""


def _fill_value(field: Any) -> tuple[bool, Any]:
    """A value the database accepts for a required field, or ``(False, None)``."""
    if field.choices:
        return True, next(iter(field.flatchoices))[0]
    kind = field.get_internal_type()
    # Random, so that a unique key never turns a probe into a conflict.
    text = f"check-{uuid.uuid4().hex[:12]}"
    max_length = getattr(field, "max_length", None) or len(text)
    values = {
        "CharField": text[:max_length],
        "TextField": text,
        "SlugField": text[:max_length],
        "EmailField": "check@example.com"[:max_length],
        "URLField": "https://example.com"[:max_length],
        "BooleanField": False,
        "IntegerField": 0,
        "BigIntegerField": 0,
        "SmallIntegerField": 0,
        "PositiveIntegerField": 0,
        "PositiveBigIntegerField": 0,
        "PositiveSmallIntegerField": 0,
        "FloatField": 0.0,
        "DecimalField": decimal.Decimal(0),
        "DateTimeField": timezone.now(),
        "DateField": datetime.date.today(),
        "TimeField": datetime.time(0, 0),
        "DurationField": datetime.timedelta(0),
        "UUIDField": uuid.uuid4(),
        "JSONField": {},
        "BinaryField": b"",
        "GenericIPAddressField": "127.0.0.1",
    }
    if kind in values:
        return True, values[kind]
    return False, None


def smoke_values(model: type[Model]) -> dict[str, Any] | None:
    """Field values that let the smoke test insert a row of ``model``, or None if it cannot."""
    values = {}
    for f in model._meta.concrete_fields:
        if f.name == "tenant" or (
            f.primary_key and (f.has_default() or "Auto" in f.get_internal_type())
        ):
            continue
        if f.null or f.has_default() or f.has_db_default() or getattr(f, "auto_now", False):
            continue
        if getattr(f, "auto_now_add", False):
            continue
        if f.is_relation:
            return None
        ok, value = _fill_value(f)
        if not ok:
            return None
        values[f.attname] = value
    return values


def smoke_test(using: str, present: Iterable[str] = ()) -> list[Finding]:
    """Write as one throwaway tenant, read and write as another, then roll everything back."""
    from better_tenant.exceptions import TenantError

    found: list[Finding] = []
    try:
        with transaction.atomic(using=using):
            _smoke_body(using, set(present), found)
            raise _Rollback
    except _Rollback:
        pass
    except (DatabaseError, TenantError) as exc:
        found.append(
            Finding(
                ERROR,
                SMOKE,
                "smoke_failed",
                f"the smoke test failed: {str(exc).strip().splitlines()[0]}",
                "Fix the errors above first; the smoke test needs the tenants table, its "
                "policies and run_as_system().",
            )
        )
    return found


def _smoke_body(using: str, present: set[str], found: list[Finding]) -> None:
    from better_tenant.constraints import is_tenant_model
    from better_tenant.context import no_tenant, run_as, run_as_system
    from better_tenant.models import Tenant

    suffix = uuid.uuid4().hex[:10]
    tenants = Tenant._base_manager.db_manager(using)
    with no_tenant(using=using):
        try:
            with transaction.atomic(using=using):
                tenants.create(name="Check", slug=f"check-outside-{suffix}")
        except DatabaseError:
            found.append(
                Finding(
                    OK,
                    SMOKE,
                    "tenants_write_blocked",
                    "tenants cannot be written outside system mode",
                )
            )
        else:
            found.append(
                Finding(
                    ERROR,
                    SMOKE,
                    "tenants_write_open",
                    "a tenant could be created outside run_as_system()",
                    f"Grant write policies on the tenants table only TO the system role "
                    f"(`{sql.TENANTS_WRITE_POLICY}`).",
                )
            )

    with run_as_system(using=using):
        first = tenants.create(name="Check A", slug=f"check-a-{suffix}")
        second = tenants.create(name="Check B", slug=f"check-b-{suffix}")
    found.append(Finding(OK, SMOKE, "tenants_system_write", "run_as_system() created two tenants"))

    with run_as(second, using=using):
        own = tenants.filter(pk=second.pk).exists()
        foreign = tenants.filter(pk=first.pk).exists()
    if foreign:
        found.append(
            Finding(
                ERROR,
                SMOKE,
                "tenants_visible",
                "a tenant scope reads another tenant's row of the tenants table",
                f"Run `manage.py migrate better_tenant`: {sql.TENANTS_READ_POLICY} then shows a "
                "tenant its own row only.",
            )
        )
    elif own:
        found.append(
            Finding(OK, SMOKE, "tenants_readable", "a tenant scope reads its own tenant row only")
        )
    else:
        found.append(
            Finding(
                ERROR,
                SMOKE,
                "tenants_unreadable",
                "a tenant scope cannot read its own row of the tenants table",
                f"Restore the {sql.TENANTS_READ_POLICY} policy "
                "(`manage.py migrate better_tenant`).",
            )
        )
    # The middleware resolves slugs before any scope, through the lookup function.
    try:
        with transaction.atomic(using=using), connections[using].cursor() as cursor:
            cursor.execute(f"SELECT {sql.LOOKUP_FUNCTION}(%s)", [first.slug])
            resolved = cursor.fetchone()[0]
    except DatabaseError as exc:
        resolved = str(exc).strip().splitlines()[0]
    if str(resolved) == str(first.pk):
        found.append(Finding(OK, SMOKE, "tenant_lookup", f"{sql.LOOKUP_FUNCTION}() resolves slugs"))
    else:
        found.append(
            Finding(
                ERROR,
                SMOKE,
                "tenant_lookup",
                f"{sql.LOOKUP_FUNCTION}() did not resolve a slug ({resolved}), so requests "
                "naming a tenant by slug get 404",
                "Run `manage.py migrate better_tenant` and `manage.py better_tenant init "
                "--app-role <role>` as the owner (it grants EXECUTE on the function).",
            )
        )

    candidates = [
        m
        for m in apps.get_models()
        if is_tenant_model(m)
        and m._meta.managed
        and not m._meta.proxy
        and m._meta.db_table in present
        and smoke_values(m) is not None
    ]
    for model in candidates:
        manager = model._base_manager.db_manager(using)
        values = smoke_values(model)
        assert values is not None  # the candidates are the models it can fill
        try:
            with run_as(first, using=using), transaction.atomic(using=using):
                row = manager.create(**values)
        except (IntegrityError, DataError):
            continue  # a check or unique constraint of this table; another model may do
        table = model._meta.db_table
        leaks = _probe(using, model, row.pk, first, second)
        for leak in leaks:
            found.append(
                Finding(
                    ERROR,
                    SMOKE,
                    "isolation_leak",
                    f"{table}: {leak}",
                    "Fix the errors reported for this table above.",
                )
            )
        if not leaks:
            found.append(
                Finding(
                    OK,
                    SMOKE,
                    "isolation",
                    f"{table}: tenant B cannot see, change or delete tenant A's row, nor write "
                    "into tenant A; no tenant sees nothing; system mode sees it",
                )
            )
        return
    found.append(
        Finding(
            INFO,
            SMOKE,
            "isolation_skipped",
            "row isolation not exercised: no TenantModel table has required fields the check "
            "can fill, so only the tenants table policies were tested",
        )
    )


def _sqlstate(exc: BaseException | None) -> str | None:
    """The SQLSTATE of the driver error somewhere down ``exc``'s chain of causes."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        # Set by psycopg's errors only.
        sqlstate = getattr(exc, "sqlstate", None)
        if sqlstate:
            return sqlstate
        exc = exc.__cause__ or exc.__context__
    return None


def _undone(using: str, write: Any) -> Any:
    """Run ``write`` in a savepoint that is rolled back; return what it returned."""
    sid = connections[using].savepoint()
    try:
        return write()
    finally:
        # No savepoint id outside a transaction, where rolling back to one does nothing either.
        if sid is not None:
            transaction.savepoint_rollback(sid, using=using)


def _probe(using: str, model: type[Model], pk: Any, first: Any, second: Any) -> list[str]:
    """What tenant ``second`` (and no tenant) can do to tenant ``first``'s row ``pk``."""
    from better_tenant.context import no_tenant, run_as, run_as_system

    manager = model._base_manager.db_manager(using)
    leaks = []
    with run_as(first, using=using):
        tenant_id = manager.filter(pk=pk).values_list("tenant_id", flat=True).first()
    if tenant_id is None:
        leaks.append("tenant A cannot read the row it just wrote")
    elif tenant_id != first.pk:
        leaks.append("the row was not stamped with the current tenant's id")
    with run_as(second, using=using):
        if manager.filter(pk=pk).exists():
            leaks.append("tenant B sees tenant A's row through the ORM")
        with connections[using].cursor() as cursor:
            cursor.execute(
                f"SELECT count(*) FROM {sql.qn(model._meta.db_table)} WHERE tenant_id = %s",
                [first.pk],
            )
            if cursor.fetchone()[0]:
                leaks.append("tenant B sees tenant A's rows through raw SQL")
        # Each write is undone at once, so one leak does not hide the probes after it.
        if _undone(using, lambda: manager.filter(pk=pk).update(tenant_id=second.pk)):
            leaks.append("tenant B could update tenant A's row")
        if _undone(using, lambda: manager.filter(pk=pk).delete()[0]):
            leaks.append("tenant B could delete tenant A's row")
        values = smoke_values(model)
        assert values is not None  # _probe runs only on models it can fill
        try:
            with transaction.atomic(using=using):
                manager.create(**{**values, "tenant_id": first.pk})
        except DatabaseError as exc:
            # Only a row-level security rejection (insufficient_privilege) proves the point;
            # another error (a check constraint, say) leaves the question open.
            if _sqlstate(exc) != "42501" and not isinstance(exc, IntegrityError | DataError):
                raise
        else:
            leaks.append("tenant B could insert a row carrying tenant A's id")
    with no_tenant(using=using):
        if manager.filter(pk=pk).exists():
            leaks.append("the row is visible with no tenant in scope")
    with run_as_system(using=using):
        if not manager.filter(pk=pk).exists():
            leaks.append("run_as_system() cannot see the row")
    return leaks


# --- the whole check -----------------------------------------------------------------------------


def _tenants_table() -> str:
    from better_tenant.models import Tenant

    return Tenant._meta.db_table


def run_checks(using: str | None = None, *, smoke: bool = True) -> Report:
    """Inspect the database as the connection of ``using`` and judge what it finds."""
    from better_tenant.conf import tenant_settings

    using = using or tenant_settings.DATABASE
    system_role = tenant_settings.SYSTEM_ROLE
    report = Report()
    connection = connections[using]
    with connection.cursor() as cursor:
        role = inspect_role(cursor, system_role)
        report.findings += evaluate_role(role)

        tenants = inspect_table(cursor, _tenants_table(), system_role, role.name)
        report.findings += evaluate_tenants_table(tenants, role.name, system_role)
        if trigger_function_exists(cursor):
            report.findings.append(
                Finding(
                    OK,
                    f"table {tenants.name}",
                    "trigger_function",
                    f"function {sql.TRIGGER_FUNCTION}() installed",
                )
            )
        else:
            report.findings.append(
                Finding(
                    ERROR,
                    f"table {tenants.name}",
                    "trigger_function_missing",
                    f"function {sql.TRIGGER_FUNCTION}() not found",
                    "Run `manage.py migrate better_tenant`.",
                )
            )

        tables = tenant_tables(cursor)
        report.tables = list(tables)
        present = []
        for table, model in tables.items():
            facts = inspect_table(cursor, table, system_role, role.name, model)
            if facts.exists:
                present.append(table)
            report.findings += evaluate_table(facts, role.name, system_role, tables)

        for source, constraint, target in shared_tables_referencing(cursor, tables):
            if source in tables or source == tenants.name or _secured_join_table(cursor, source):
                continue
            report.findings.append(
                Finding(
                    WARNING,
                    f"table {source}",
                    "shared_references_tenant",
                    f"{constraint} references the tenant table {target}, but {source} has no "
                    "tenant_id: its rows are shared by every tenant",
                    "Make it a TenantModel (or add tenant_id and `better_tenant add-table`), "
                    "e.g. an explicit TenantModel `through` for a many-to-many.",
                )
            )

        bypasses = inspect_bypasses(cursor, tables, system_role, role.name)
        report.findings += evaluate_bypasses(bypasses, role.name)
    # Imported here: hardening builds its findings with this module's Finding.
    from better_tenant.hardening import context_findings

    report.findings += context_findings(connection, role.name)
    if not smoke:
        return report
    if role.superuser or role.bypassrls:
        skipped = f"{role.name} bypasses row-level security, so isolation cannot be shown"
    elif not tenants.exists:
        skipped = "there is no tenants table"
    elif not role.can_set_system_role:
        skipped = "run_as_system() is unavailable, so no throwaway tenants can be made"
    else:
        report.findings += smoke_test(using, present)
        return report
    report.findings.append(Finding(INFO, SMOKE, "smoke_skipped", f"smoke test skipped: {skipped}"))
    return report


def tables_without_rls(cursor: Any) -> list[str]:
    """Tables with a tenant_id column, no row-level security and no policy."""
    cursor.execute(
        _TENANT_ID_TABLES + " AND NOT c.relrowsecurity"
        " AND NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid)"
        " ORDER BY c.relname"
    )
    return [row[0] for row in cursor.fetchall()]
