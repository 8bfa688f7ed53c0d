"""``TenantRLS``: a Meta constraint that makes makemigrations emit a table's RLS SQL."""

from __future__ import annotations

from typing import Any

from django.db.models.constraints import BaseConstraint

from better_tenant import sql


class TenantRLS(BaseConstraint):
    """Row-level security for one tenant-scoped table.

    Attached automatically to every concrete ``TenantModel``; ``makemigrations`` then emits it as
    part of ``CreateModel`` (or as ``AddConstraint``), ``sqlmigrate`` shows the policies, and
    reversing the migration removes them. ``foreign_keys`` names the model's foreign keys; those
    that point at another tenant model get a composite ``(tenant_id, <fk>)`` constraint, so a row
    can never reference another tenant's row.
    """

    def __init__(self, *, name: str, foreign_keys: tuple[str, ...] | list[str] = ()) -> None:
        super().__init__(name=name)
        self.foreign_keys = tuple(foreign_keys)

    # SQL ---------------------------------------------------------------------------------------
    def spec(self, model: Any) -> sql.TableSpec:
        from better_tenant.conf import tenant_settings

        meta = model._meta
        pk = meta.pk.column if meta.pk is not None and meta.pk.concrete else None
        fks = []
        for name in self.foreign_keys:
            try:
                field = meta.get_field(name)
            except Exception:
                continue
            remote = getattr(field, "related_model", None)
            if remote is None or not is_tenant_model(remote):
                continue
            target = field.target_field
            if not target.primary_key:
                continue
            fks.append(sql.ForeignKeySpec(field.column, remote._meta.db_table, target.column))
        return sql.TableSpec(
            table=meta.db_table,
            system_role=tenant_settings.SYSTEM_ROLE,
            pk_column=pk,
            foreign_keys=tuple(fks),
        )

    def constraint_sql(self, model: Any, schema_editor: Any) -> None:
        # Inside CREATE TABLE: the policies need the finished table, so run them afterwards.
        schema_editor.deferred_sql.append(self.create_sql(model, schema_editor))
        return None

    def create_sql(self, model: Any, schema_editor: Any) -> str:
        return sql.enable_table_sql(self.spec(model))

    def remove_sql(self, model: Any, schema_editor: Any) -> str:
        return sql.disable_table_sql(self.spec(model))

    def validate(self, *args: Any, **kwargs: Any) -> None:
        # Enforced by PostgreSQL on every statement; nothing to check in Python.
        return None

    # identity ----------------------------------------------------------------------------------
    def deconstruct(self) -> tuple[str, tuple, dict]:
        _, args, kwargs = super().deconstruct()
        kwargs.pop("violation_error_message", None)
        kwargs.pop("violation_error_code", None)
        if self.foreign_keys:
            kwargs["foreign_keys"] = list(self.foreign_keys)
        return "better_tenant.constraints.TenantRLS", args, kwargs

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TenantRLS):
            return self.name == other.name and self.foreign_keys == other.foreign_keys
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.name, self.foreign_keys))

    def __repr__(self) -> str:
        return f"<TenantRLS: name={self.name!r} foreign_keys={self.foreign_keys!r}>"


def is_tenant_model(model: Any) -> bool:
    """True for models (current or historical) whose ``tenant`` field is a ``TenantField``."""
    from better_tenant.models import TenantField

    try:
        field = model._meta.get_field("tenant")
    except Exception:
        return False
    return isinstance(field, TenantField)
