"""Database scopes of better_webhooks: system mode when better_tenant is installed."""

from __future__ import annotations

import uuid
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from django.db import connections, transaction

from better_core.tenancy import current_tenant_id as core_current_tenant_id
from better_core.tenancy import system_scope as core_system_scope
from better_core.tenancy import tenancy_installed
from better_webhooks.conf import webhook_settings


def alias() -> str:
    return webhook_settings.DATABASE


tenancy = tenancy_installed
current_tenant_id = core_current_tenant_id


def system_scope() -> AbstractContextManager[Any]:
    """A transaction that sees every tenant's webhook rows (RLS system mode with better_tenant)."""
    return core_system_scope(using=alias())


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
