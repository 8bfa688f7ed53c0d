"""Console permissions for code that runs with or without better_console installed."""

from __future__ import annotations

from typing import Any

from django.apps import apps


def console_allows(user: Any, level: str) -> bool:
    """Whether ``user`` holds console ``level`` (read/write/admin); True without better_console.

    Without the console there are no console levels, so Django's own permissions decide alone.
    """
    if not apps.is_installed("better_console"):
        return True
    from better_console.permissions import has_console_level

    return has_console_level(user, level)
