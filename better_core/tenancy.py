"""Optional tenancy for the apps: system mode and the tenant in scope when better_tenant is on."""

from __future__ import annotations

import uuid
from contextlib import AbstractContextManager
from typing import Any

from django.apps import apps
from django.db import transaction


def tenancy_installed() -> bool:
    """True when better_tenant is an installed app."""
    return apps.is_installed("better_tenant")


def system_scope(using: str | None = None) -> AbstractContextManager[Any]:
    """A transaction in system mode (every tenant's rows) with better_tenant, else a plain one."""
    if tenancy_installed():
        from better_tenant import run_as_system

        return run_as_system(using=using)
    return transaction.atomic(using=using)


def current_tenant_id() -> uuid.UUID | None:
    """The tenant in scope, or None (outside any tenant, or without better_tenant)."""
    if not tenancy_installed():
        return None
    from better_tenant import get_context

    return get_context().tenant_id
