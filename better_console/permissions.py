"""Console levels of a Django user: read < write < admin, from is_superuser and console_* perms.

The ``better_console`` permissions ``console_read``, ``console_write`` and ``console_admin`` grant
one level each; every level includes the lower ones, so a user holding only ``console_admin`` may
also read and write. Superusers hold every level. Inactive users and users who are not staff hold
none, whatever their permissions say: the console lives in the Django admin, which refuses them.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied

from better_console.registry import PERMISSIONS

APP_LABEL = "better_console"


def codename(level: str) -> str:
    """The permission codename of a console level: ``"write"`` → ``"console_write"``."""
    _check_level(level)
    return f"console_{level}"


def console_levels(user: Any) -> tuple[str, ...]:
    """The levels ``user`` holds, lowest first: ``()``, ``("read",)``, ... up to all three."""
    if user is None or not getattr(user, "is_authenticated", False):
        return ()
    if not getattr(user, "is_active", False) or not getattr(user, "is_staff", False):
        return ()
    if getattr(user, "is_superuser", False):
        return PERMISSIONS
    held = [
        rank
        for rank, level in enumerate(PERMISSIONS)
        if user.has_perm(f"{APP_LABEL}.{codename(level)}")
    ]
    return PERMISSIONS[: max(held) + 1] if held else ()


def console_level(user: Any) -> str | None:
    """The highest level ``user`` holds, or None."""
    levels = console_levels(user)
    return levels[-1] if levels else None


def has_console_level(user: Any, level: str) -> bool:
    """True when ``user`` holds ``level`` or a higher one."""
    _check_level(level)
    return level in console_levels(user)


def require_console_level(user: Any, level: str) -> None:
    """Raise ``PermissionDenied`` (a 403 in a view) unless ``user`` holds ``level``."""
    if not has_console_level(user, level):
        raise PermissionDenied(f"This needs the console {level!r} permission ({codename(level)}).")


def _check_level(level: str) -> None:
    if level not in PERMISSIONS:
        raise ValueError(f"Unknown console level {level!r}; use one of {', '.join(PERMISSIONS)}.")
