"""Automatic audit log of inserts, updates and deletes, with actor context and enrichment."""

from __future__ import annotations

import sys
import types
from typing import Any

__all__ = [
    "audit_context",
    "capture_log",
    "enrich",
    "export",
    "export_response",
    "get_audit_context",
    "merge_audit_context",
    "on_after_log",
    "on_before_log",
    "query",
    "stats",
]

_EXPORTS = {
    "enrich": "better_audit.enrichment",
    "capture_log": "better_audit.writer",
    "on_before_log": "better_audit.hooks",
    "on_after_log": "better_audit.hooks",
    "audit_context": "better_audit.context",
    "merge_audit_context": "better_audit.context",
    "get_audit_context": "better_audit.context",
    "query": "better_audit.query",
    "export": "better_audit.export",
    "export_response": "better_audit.export",
    "stats": "better_audit.stats",
}


def __getattr__(name: str) -> Any:
    # Lazy, so that importing the package never imports models before the app registry is ready.
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'better_audit' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


# query, export and stats name both a function and the submodule that holds it. Importing a
# submodule binds it on the package, which would hide the function; keep the function visible
# (the submodules stay importable through sys.modules: `from better_audit.query import AuditQuery`).
_FUNCTION_MODULES = frozenset({"query", "export", "stats"})


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value: Any) -> None:
        if name in _FUNCTION_MODULES and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
