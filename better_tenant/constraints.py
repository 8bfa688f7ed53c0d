"""``TenantRLS`` and ``TenantJoinRLS``: Meta constraints that make makemigrations emit RLS SQL."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, cast

from django.core.exceptions import FieldDoesNotExist
from django.db.backends.ddl_references import Reference, Statement
from django.db.migrations.state import StateApps
from django.db.models import Model
from django.db.models.constraints import BaseConstraint

from better_tenant import sql


class _PolicyConstraint(BaseConstraint):
    """A constraint that stands for SQL policies: PostgreSQL enforces it, Python checks nothing.

    ``identity`` names the keyword arguments that, with the name, make two such constraints equal
    (and that ``deconstruct`` writes into migrations when they are set).
    """

    identity: tuple[str, ...] = ()

    def validate(self, *args: Any, **kwargs: Any) -> None:
        # Enforced by PostgreSQL on every statement; nothing to check in Python.
        return None

    def _identity(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.identity)

    def deconstruct(self) -> tuple[str, Sequence[Any], dict[str, Any]]:
        _, args, kwargs = super().deconstruct()
        kwargs.pop("violation_error_message", None)
        kwargs.pop("violation_error_code", None)
        for name, value in zip(self.identity, self._identity(), strict=True):
            if value:
                kwargs[name] = list(value) if isinstance(value, tuple) else value
        return f"better_tenant.constraints.{type(self).__name__}", args, kwargs

    def __eq__(self, other: object) -> bool:
        if type(other) is type(self):
            return self.name == other.name and self._identity() == other._identity()
        return NotImplemented

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.name, *self._identity()))

    def __repr__(self) -> str:
        fields = " ".join(
            f"{name}={value!r}" for name, value in zip(self.identity, self._identity(), strict=True)
        )
        return f"<{type(self).__name__}: name={self.name!r} {fields}>"


class TenantRLS(_PolicyConstraint):
    """Row-level security for one tenant-scoped table.

    Attached automatically to every concrete ``TenantModel``; ``makemigrations`` then emits it as
    part of ``CreateModel`` (or as ``AddConstraint``), ``sqlmigrate`` shows the policies, and
    reversing the migration removes them. ``foreign_keys`` names the model's foreign keys; those
    that point at another tenant model get a composite ``(tenant_id, <fk>)`` constraint, so a row
    can never reference another tenant's row.

    A composite key references the unique ``(tenant_id, id)`` key that the other table's own
    ``TenantRLS`` creates, and the autodetector orders the two operations freely (through models,
    circular and cross-app foreign keys, swappable models, squashed migrations). So the composite
    key is added by whichever of the two operations runs second, as the migration state shows; it
    goes with the referenced table's key (dropped with CASCADE) or with the referencing table's
    TenantRLS, whichever is reversed first. Because Django reverts migrations with a state of the
    other apps that follows its plan rather than what is applied, the statement only runs where
    the database has the key and the columns.
    """

    identity = ("foreign_keys",)

    def __init__(self, *, name: str, foreign_keys: tuple[str, ...] | list[str] = ()) -> None:
        super().__init__(name=name)
        self.foreign_keys = tuple(foreign_keys)

    # SQL ---------------------------------------------------------------------------------------
    def targets(self, model: Any) -> list[tuple[Any, Any]]:
        """``(field, remote model)`` for each listed foreign key that gets a composite key."""
        found: list[tuple[Any, Any]] = []
        if not is_tenant_model(model):
            return found
        for name in self.foreign_keys:
            try:
                field = model._meta.get_field(name)
            except FieldDoesNotExist:
                continue
            remote = getattr(field, "related_model", None)
            if remote is None or not is_tenant_model(remote):
                continue
            if field.target_field.primary_key:
                found.append((field, remote))
        return found

    def spec(self, model: Any) -> sql.TableSpec:
        from better_tenant.conf import tenant_settings

        meta = model._meta
        pk = meta.pk.column if meta.pk is not None and meta.pk.concrete else None
        keys = tuple(_composite_key(field, remote) for field, remote in self.targets(model))
        return sql.TableSpec(
            table=meta.db_table,
            system_role=tenant_settings.SYSTEM_ROLE,
            pk_column=pk,
            foreign_keys=keys,
        )

    def constraint_sql(self, model: Any, schema_editor: Any) -> str:
        # Inside CREATE TABLE: the policies need the finished table, so run them afterwards (an
        # empty definition is left out of the table's).
        for statement in self._statements(model, schema_editor):
            _defer(schema_editor, statement)
        return ""

    # Django executes and defers a Statement as well as a str; the stubs allow only str.
    def create_sql(self, model: Any, schema_editor: Any) -> str | _Deferred:  # type: ignore[override]
        # Django may defer this too (a CREATE TABLE with parameters): tag it like the others.
        statements = self._statements(model, schema_editor)
        if not statements:
            return ""
        return _Deferred("\n".join(map(str, statements)), (model._meta.db_table, "tenant_id"))

    def remove_sql(self, model: Any, schema_editor: Any) -> str:
        table = model._meta.db_table
        # Added earlier in this migration but not run yet: removing it is not running it.
        _cancel(schema_editor, table)
        if not is_tenant_model(model):
            return ""
        return sql.disable_table_sql(self.spec(model))

    def _statements(self, model: Any, schema_editor: Any) -> list[_Deferred]:
        """RLS, the tenant key and the composite keys due now, each naming what it needs."""
        if not is_tenant_model(model):
            # A model being deleted loses its tenant field before the model itself.
            return []
        spec = self.spec(model)
        table = spec.table
        rls = sql.enable_table_sql(replace(spec, foreign_keys=()))
        statements = [_Deferred(rls, (table, "tenant_id"))]
        for field, remote in self.targets(model):
            fk = _composite_key(field, remote)
            if _same(remote, model):
                # After its own tenant key, in the same SQL.
                statements.append(
                    _composite_key_statement(sql.composite_fk_sql(table, fk), table, fk)
                )
                continue
            if not _tenant_key_applied(remote, model):
                continue  # the referenced table's TenantRLS adds it once its key exists
            key = _composite_key_statement(_composite_key_sql(model, table, fk), table, fk)
            if _pending(schema_editor, _tenant_key_sql(remote)):
                _defer(schema_editor, key)  # that key waits in the deferred SQL: follow it
            else:
                statements.append(key)
        note = f"-- composite keys of tables migrated before {table} had its key\n"
        for other, fk in _incoming(model):
            guarded = sql.guarded_composite_fk_sql(other, fk)
            if not _pending(schema_editor, guarded):
                statements.append(_composite_key_statement(note + guarded, other, fk))
                note = ""
        return statements


class TenantJoinRLS(_PolicyConstraint):
    """Row-level security for the automatic join table of a TenantModel's many-to-many ``field``.

    The join table has no tenant_id of its own. Its policy lets a link be read or written only
    when every row it joins that belongs to a tenant model is visible, which those rows' own
    policies decide: a tenant sees and makes links between its own rows only, a row of a shared
    model constrains nothing, and system mode sees every link. Attached automatically for each
    many-to-many field of a ``TenantModel`` that has no explicit ``through`` model.
    """

    identity = ("field",)

    def __init__(self, *, name: str, field: str) -> None:
        super().__init__(name=name)
        self.field = field

    # SQL ---------------------------------------------------------------------------------------
    def spec(self, model: Any) -> sql.JoinTableSpec | None:
        """The join table and its keys to tenant tables; None when there is nothing to secure."""
        from better_tenant.conf import tenant_settings

        try:
            field = model._meta.get_field(self.field)
        except FieldDoesNotExist:
            return None
        through = getattr(field.remote_field, "through", None)
        if (
            not isinstance(through, type)
            or not issubclass(through, Model)
            or not through._meta.auto_created
        ):
            return None
        references = tuple(
            _composite_key(key, key.related_model)
            for key in through._meta.local_fields
            if key.many_to_one and is_tenant_model(key.related_model)
        )
        if not references:
            return None
        return sql.JoinTableSpec(through._meta.db_table, tenant_settings.SYSTEM_ROLE, references)

    def constraint_sql(self, model: Any, schema_editor: Any) -> str:
        # Inside CREATE TABLE of the model: its join table is created right after it.
        statement = self.create_sql(model, schema_editor)
        if isinstance(statement, _Deferred):  # else "": nothing to secure
            _defer(schema_editor, statement)
        return ""

    # Django executes and defers a Statement as well as a str; the stubs allow only str.
    def create_sql(self, model: Any, schema_editor: Any) -> str | _Deferred:  # type: ignore[override]
        spec = self.spec(model)
        if spec is None:
            return ""
        needs = [(spec.table, ref.column) for ref in spec.references]
        return _Deferred(sql.enable_join_table_sql(spec), *needs)

    def remove_sql(self, model: Any, schema_editor: Any) -> str:
        spec = self.spec(model)
        if spec is None:
            return ""
        _cancel(schema_editor, spec.table)
        return sql.disable_join_table_sql(spec.table)


def is_tenant_model(model: Any) -> bool:
    """True for models (current or historical) whose ``tenant`` field is a ``TenantField``."""
    from better_tenant.models import TenantField

    try:
        field = model._meta.get_field("tenant")
    except Exception:
        return False
    return isinstance(field, TenantField)


# --- ordering of composite keys ------------------------------------------------------------------


def _composite_key(field: Any, remote: Any) -> sql.ForeignKeySpec:
    return sql.ForeignKeySpec(field.column, remote._meta.db_table, field.target_field.column)


def _same(one: Any, other: Any) -> bool:
    return one._meta.label_lower == other._meta.label_lower


def _in_migration(model: Any) -> bool:
    """Historical models of a migration: their constraints say which operations have run."""
    return isinstance(model._meta.apps, StateApps)


def _tenant_key_applied(remote: Any, model: Any) -> bool:
    """Whether the (tenant_id, pk) key of ``remote`` is there for ``model``'s TenantRLS."""
    if not _in_migration(model) or not remote._meta.managed:
        # Outside a migration every table is created first; an unmanaged table gets its key
        # from EnableTenantRLS, which the migration state does not record.
        return True
    return any(isinstance(c, TenantRLS) for c in remote._meta.constraints)


def _composite_key_sql(model: Any, table: str, fk: sql.ForeignKeySpec) -> str:
    # Outside a migration nothing is known about the order: a missing key is an error, as ever.
    if _in_migration(model):
        return sql.guarded_composite_fk_sql(table, fk)
    return sql.composite_fk_sql(table, fk)


def _tenant_key_sql(model: Any) -> str:
    return sql.tenant_key_sql(model._meta.db_table, model._meta.pk.column)


def _incoming(model: Any) -> list[tuple[str, sql.ForeignKeySpec]]:
    """Composite keys of other tables into ``model`` whose TenantRLS has already run."""
    if not _in_migration(model):
        return []
    found = []
    for other in model._meta.apps.get_models():
        if other._meta.proxy or _same(other, model):
            continue
        for constraint in other._meta.constraints:
            if not isinstance(constraint, TenantRLS):
                continue
            for field, remote in constraint.targets(other):
                if _same(remote, model):
                    found.append((other._meta.db_table, _composite_key(field, remote)))
    return found


class _Needs(Reference):
    """The tables and columns a deferred statement needs; renders as nothing."""

    def __init__(self, columns: tuple[tuple[str, str], ...]) -> None:
        self.columns = frozenset(columns)
        self.tables = frozenset(table for table, _ in columns)

    def references_table(self, table: str) -> bool:
        return table in self.tables

    def references_column(self, table: str, column: str) -> bool:
        return (table, column) in self.columns

    def __str__(self) -> str:
        return ""


class _Deferred(Statement):
    """SQL that may wait for the end of a migration, with the ``(table, column)`` pairs it needs.

    Django runs deferred SQL after the migration's other operations, and drops its own deferred
    statements when a later operation drops their table or column. As a ``Statement`` that names
    what it needs, this SQL is dropped the same way, and a removal of row-level security in
    between cancels what it would have added.
    """

    def __init__(self, statement: str, *needs: tuple[str, str]) -> None:
        super().__init__("%(sql)s%(needs)s", sql=statement, needs=_Needs(needs))

    @property
    def tables(self) -> frozenset[str]:
        # The stubs type every part as a Table; this one is the _Needs given above.
        return cast(_Needs, self.parts["needs"]).tables


def _composite_key_statement(statement: str, table: str, fk: sql.ForeignKeySpec) -> _Deferred:
    return _Deferred(
        statement, (table, "tenant_id"), (table, fk.column), (fk.to_table, "tenant_id")
    )


def _pending(schema_editor: Any, statement: str) -> bool:
    """Whether ``statement`` waits in the deferred SQL run at the end of this migration."""
    return any(
        statement in str(deferred)
        for deferred in schema_editor.deferred_sql
        if isinstance(deferred, _Deferred)
    )


def _defer(schema_editor: Any, statement: _Deferred) -> None:
    if not _pending(schema_editor, str(statement)):
        schema_editor.deferred_sql.append(statement)


def _cancel(schema_editor: Any, table: str) -> None:
    schema_editor.deferred_sql[:] = [
        deferred
        for deferred in schema_editor.deferred_sql
        if not (isinstance(deferred, _Deferred) and deferred.references_table(table))
    ]
