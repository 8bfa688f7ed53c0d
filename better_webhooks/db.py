"""The database of better_webhooks and its tenancy scopes (better_tenant.shortcuts on its alias)."""

from __future__ import annotations

import uuid
from contextlib import AbstractContextManager
from typing import Any

from better_tenant import shortcuts
from better_tenant.shortcuts import current_tenant_id, to_tenant_id
from better_tenant.shortcuts import tenancy_installed as tenancy
from better_webhooks.conf import webhook_settings
from better_webhooks.exceptions import TenancyNotInstalledError

__all__ = [
    "alias",
    "current_tenant_id",
    "scope_for",
    "system_scope",
    "tenancy",
    "tenant_of",
    "to_tenant_id",
]


def alias() -> str:
    return webhook_settings.DATABASE


def tenant_of(tenant: Any) -> uuid.UUID | None:
    """The id of the tenant ``tenant=`` names, else of the tenant in scope (None: the platform).

    Without better_tenant there is no tenant to name: a ``tenant=`` is refused rather than stored
    where nothing checks it, as the console refuses a ``tenantId``.
    """
    if tenant is None:
        return current_tenant_id()
    if not tenancy():
        raise TenancyNotInstalledError(
            "tenant= names a tenant, which needs better_tenant in INSTALLED_APPS; leave it out "
            "(the endpoints and messages then belong to the platform)."
        )
    return to_tenant_id(tenant)


def system_scope() -> AbstractContextManager[Any]:
    """A transaction that sees every tenant's webhook rows (RLS system mode with better_tenant)."""
    return shortcuts.system_scope(using=alias())


def scope_for(tenant: Any) -> AbstractContextManager[Any]:
    """A transaction that may read and write the webhook rows of ``tenant`` (None: every tenant)."""
    return shortcuts.tenant_scope(tenant, using=alias())
