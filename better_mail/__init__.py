"""Typed MJML templates sent through any EMAIL_BACKEND, every send logged."""

from __future__ import annotations

from typing import Any

__all__ = ["MailTemplate", "get_template", "render", "send", "send_due", "send_many"]

_EXPORTS = {
    "send": "better_mail.sending",
    "send_many": "better_mail.sending",
    "send_due": "better_mail.delivery",
    "MailTemplate": "better_mail.templates",
    "get_template": "better_mail.templates",
    "render": "better_mail.templates",
}


def __getattr__(name: str) -> Any:
    # Lazy, so that importing the package never imports models before the app registry is ready.
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'better_mail' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
