"""Multi-tenancy enforced by PostgreSQL Row-Level Security."""

from __future__ import annotations

from typing import Any

__all__ = [
    "get_context",
    "get_tenant",
    "get_tenant_id",
    "holding",
    "no_tenant",
    "register_exempt_path",
    "register_role",
    "require_tenant_id",
    "run_as",
    "run_as_system",
    "tenant_required",
]


def __getattr__(name: str) -> Any:
    # Lazy, so that importing the package never imports models before the app registry is ready.
    if name in {
        "get_context",
        "get_tenant",
        "get_tenant_id",
        "holding",
        "run_as",
        "run_as_system",
        "no_tenant",
        "require_tenant_id",
    }:
        from better_tenant import context

        return getattr(context, name)
    if name in {"register_exempt_path", "register_role"}:
        from better_tenant import registry

        return getattr(registry, name)
    if name == "tenant_required":
        from better_tenant.decorators import tenant_required

        return tenant_required
    raise AttributeError(f"module 'better_tenant' has no attribute {name!r}")
