"""Signed, retried, logged outgoing webhooks.

``import better_webhooks as webhooks; webhooks.send("invoice.paid", {...})``. The names are
loaded lazily, so importing the package never imports models before the app registry is ready.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "create_endpoint",
    "event",
    "register_event",
    "rotate_secret",
    "send",
]

_NAMES = {
    "send": "better_webhooks.sending",
    "create_endpoint": "better_webhooks.endpoints",
    "rotate_secret": "better_webhooks.endpoints",
    "disable_endpoint": "better_webhooks.endpoints",
    "enable_endpoint": "better_webhooks.endpoints",
    "register_event": "better_webhooks.events",
    "event": "better_webhooks.events",
    "list_events": "better_webhooks.events",
    "verify_webhook_signature": "better_webhooks.verify",
    "assert_webhook_signature": "better_webhooks.verify",
    "webhook_receiver": "better_webhooks.verify",
}


def __getattr__(name: str) -> Any:
    module = _NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'better_webhooks' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
