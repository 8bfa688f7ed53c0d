"""The console protocol of the suite at /.well-known/better/, and the Django admin as its UI."""

from __future__ import annotations

from typing import Any

__all__ = [
    "ConsoleAutoApproveInProductionError",
    "ConsoleConfigurationError",
    "ConsoleError",
    "ConsoleRequest",
    "ConsoleResponse",
    "Endpoint",
    "Product",
    "SessionInfo",
    "get_product",
    "products",
    "purge_expired",
    "register_product",
    "unregister_product",
]

_EXPORTS = {
    "ConsoleAutoApproveInProductionError": "better_console.exceptions",
    "ConsoleConfigurationError": "better_console.exceptions",
    "ConsoleError": "better_console.exceptions",
    "ConsoleRequest": "better_console.registry",
    "ConsoleResponse": "better_console.registry",
    "SessionInfo": "better_console.registry",
    "Endpoint": "better_console.registry",
    "Product": "better_console.registry",
    "get_product": "better_console.registry",
    "products": "better_console.registry",
    "register_product": "better_console.registry",
    "unregister_product": "better_console.registry",
    "purge_expired": "better_console.sessions",
}


def __getattr__(name: str) -> Any:
    # Lazy, so that importing the package never imports models before the app registry is ready.
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'better_console' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
