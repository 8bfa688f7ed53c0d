"""Database scopes of better_webhooks: system mode when better_tenant is installed."""

from __future__ import annotations

import uuid
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from django.apps import apps
from django.db import connections, transaction

from better_webhooks.conf import webhook_settings


def alias() -> str:
    return webhook_settings.DATABASE


def tenancy() -> bool:
    return apps.is_installed("better_tenant")


def system_scope() -> AbstractContextManager[Any]:
    """A transaction that sees every tenant's webhook rows (RLS system mode with better_tenant)."""
    if tenancy():
        from better_tenant import run_as_system

        return run_as_system(using=alias())
    return transaction.atomic(using=alias())


def current_tenant_id() -> uuid.UUID | None:
    """The tenant in scope, or None (outside any tenant, or without better_tenant)."""
    if not tenancy():
        return None
    from better_tenant import get_context

    return get_context().tenant_id


def to_tenant_id(value: Any) -> uuid.UUID | None:
    """A tenant id from a Tenant, UUID or UUID string (None stays None)."""
    if value is None:
        return None
    if tenancy():
        from better_tenant.context import to_tenant_id as convert

        return convert(value)
    if isinstance(value, uuid.UUID):
        return value
    return uuid.UUID(str(getattr(value, "pk", value)))


def _atomic() -> AbstractContextManager[Any]:
    # Inside the caller's transaction no savepoint is needed: an error aborts it anyway.
    if connections[alias()].in_atomic_block:
        return nullcontext()
    return transaction.atomic(using=alias())


def scope_for(tenant_id: uuid.UUID | None) -> AbstractContextManager[Any]:
    """A transaction that may read and write rows of ``tenant_id``: the caller's own when its
    scope already allows that, else system mode (no tenant) or that tenant's scope."""
    if not tenancy():
        return _atomic()
    from better_tenant import get_context, run_as

    context = get_context()
    if context.is_system or (tenant_id is not None and context.tenant_id == tenant_id):
        return _atomic()
    if tenant_id is None:
        return system_scope()
    return run_as(tenant_id, using=alias())
