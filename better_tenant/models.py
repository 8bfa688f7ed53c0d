"""The tenants table and the abstract base of tenant-scoped models."""

from __future__ import annotations

import uuid
from typing import Any

from django.db import models
from django.db.models.constraints import BaseConstraint
from django.db.models.functions import Now
from django.db.models.signals import class_prepared

from better_tenant import sql


class CurrentTenantId(models.Expression):
    """``NULLIF(current_setting('app.current_tenant', true), '')::uuid`` as a column default.

    NULLIF matters: after a transaction-local ``set_config`` ends, the setting reads ``''`` (not
    NULL) for the rest of the session, and ``''::uuid`` would fail instead of yielding NULL.
    """

    output_field = models.UUIDField()
    allowed_default = True

    # A list, not the tuple of the stubs: Django 5.2 adds the params of combined ALTERs with
    # sum(params, []).
    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:  # type: ignore[override]
        return sql.CURRENT_TENANT, []

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CurrentTenantId)

    def __hash__(self) -> int:
        return hash(CurrentTenantId)


class Tenant(models.Model):
    """One customer of the SaaS. Readable by every role; written only in system mode."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=255)
    slug = models.SlugField(max_length=63, unique=True)
    created_at = models.DateTimeField(auto_now_add=True, db_default=Now())

    class Meta:
        db_table = "tenants"
        ordering = ["created_at", "slug"]

    def __str__(self) -> str:
        return f"{self.name} ({self.slug})"


class TenantField(models.ForeignKey):
    """The ``tenant`` foreign key of a ``TenantModel`` (column ``tenant_id``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("to", "better_tenant.Tenant")
        kwargs.setdefault("on_delete", models.CASCADE)
        kwargs.setdefault("db_default", CurrentTenantId())
        kwargs.setdefault("related_name", "+")
        # The unique (tenant_id, id) key that TenantRLS adds serves as the tenant-led index.
        kwargs.setdefault("db_index", False)
        kwargs.setdefault("blank", True)
        super().__init__(*args, **kwargs)


class TenantModel(models.Model):
    """Abstract base: rows belong to one tenant and PostgreSQL RLS confines every query to it."""

    tenant = TenantField()

    class Meta:
        abstract = True


def _attach_rls(sender: type[models.Model], **kwargs: Any) -> None:
    meta = sender._meta
    # Historical models (module "__fake__") carry exactly the constraints of their migrations.
    if meta.abstract or meta.proxy or not meta.managed or sender.__module__ == "__fake__":
        return
    if not any(f.name == "tenant" and isinstance(f, TenantField) for f in meta.local_fields):
        return
    from better_tenant.constraints import TenantJoinRLS, TenantRLS

    added: list[BaseConstraint] = []
    if not any(isinstance(c, TenantRLS) for c in meta.constraints):
        foreign_keys = tuple(
            f.name
            for f in meta.local_fields
            if f.many_to_one and f.name != "tenant" and not isinstance(f, TenantField)
        )
        added.append(
            TenantRLS(name=sql.short_name(meta.db_table, "rls"), foreign_keys=foreign_keys)
        )
    # Django's automatic join tables have no tenant_id: secure each through its own policy.
    secured = {c.field for c in meta.constraints if isinstance(c, TenantJoinRLS)}
    for field in meta.local_many_to_many:
        through = field.remote_field.through
        if field.name in secured or not isinstance(through, type):
            continue
        if through._meta.auto_created:
            name = sql.short_name(through._meta.db_table, "rls")
            added.append(TenantJoinRLS(name=name, field=field.name))
    if added:
        meta.constraints = [*meta.constraints, *added]
        # ModelState reads options from original_attrs, so makemigrations sees the constraints.
        meta.original_attrs["constraints"] = meta.constraints


class_prepared.connect(_attach_rls, dispatch_uid="better_tenant.attach_rls")
