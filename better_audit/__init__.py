"""Automatic audit log of inserts, updates and deletes, with actor context and enrichment."""

from __future__ import annotations

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
    "query": "better_audit.queries",
    "export": "better_audit.exports",
    "export_response": "better_audit.exports",
    "stats": "better_audit.statistics",
}


def __getattr__(name: str) -> Any:
    # Lazy, so that importing the package never imports models before the app registry is ready.
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'better_audit' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
