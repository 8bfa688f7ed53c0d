"""The database of better_webhooks and its tenancy scopes (better_tenant.shortcuts on its alias)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from better_tenant import shortcuts
from better_tenant.shortcuts import current_tenant_id, to_tenant_id
from better_tenant.shortcuts import tenancy_installed as tenancy
from better_webhooks.conf import webhook_settings

__all__ = ["alias", "current_tenant_id", "scope_for", "system_scope", "tenancy", "to_tenant_id"]


def alias() -> str:
    return webhook_settings.DATABASE


def system_scope() -> AbstractContextManager[Any]:
    """A transaction that sees every tenant's webhook rows (RLS system mode with better_tenant)."""
    return shortcuts.system_scope(using=alias())


def scope_for(tenant: Any) -> AbstractContextManager[Any]:
    """A transaction that may read and write the webhook rows of ``tenant`` (None: every tenant)."""
    return shortcuts.tenant_scope(tenant, using=alias())
