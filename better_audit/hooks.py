"""Lifecycle hooks around each audit write, and where failures that cannot be raised are reported.

``BEFORE_LOG`` hooks get the enriched, redacted entry and may change it; one that raises aborts
the write of that entry (the data change itself goes on) and the error goes to ``ON_ERROR``.
``AFTER_LOG`` hooks get a read-only copy once the entry is written; their errors also go to
``ON_ERROR``, so an observer can never undo a committed change. Hooks from settings run first, then
those registered at runtime, each list in registration order.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from better_audit.conf import audit_settings

logger = logging.getLogger("better_audit")

Hook = Callable[[Any], Any]

_runtime_before: list[Hook] = []
_runtime_after: list[Hook] = []
_before: tuple[Hook, ...] | None = None
_after: tuple[Hook, ...] | None = None


def on_before_log(hook: Hook) -> Callable[[], None]:
    """Run ``hook(entry)`` before each entry is written; returns a function that unregisters it."""
    return _register(_runtime_before, hook)


def on_after_log(hook: Hook) -> Callable[[], None]:
    """Run ``hook(entry)`` after each entry is written; returns a function that unregisters it."""
    return _register(_runtime_after, hook)


def _register(hooks: list[Hook], hook: Hook) -> Callable[[], None]:
    if not callable(hook):
        raise TypeError(f"A hook must be callable; got {hook!r}.")
    hooks.append(hook)
    reset()

    def dispose() -> None:
        # Identity, not equality: the same function may be registered twice on purpose.
        for position, registered in enumerate(hooks):
            if registered is hook:
                del hooks[position]
                reset()
                return

    return dispose


def _configured(key: str) -> tuple[Hook, ...]:
    value = getattr(audit_settings, key)
    if value is None:
        return ()
    if callable(value):
        return (value,)
    return tuple(value)


def before_hooks() -> tuple[Hook, ...]:
    global _before
    if _before is None:
        _before = _configured("BEFORE_LOG") + tuple(_runtime_before)
    return _before


def after_hooks() -> tuple[Hook, ...]:
    global _after
    if _after is None:
        _after = _configured("AFTER_LOG") + tuple(_runtime_after)
    return _after


def reset() -> None:
    """Recompute the hook lists on next use (registration or a settings change)."""
    global _before, _after
    _before = _after = None


def clear() -> None:
    """Forget the runtime hooks (tests)."""
    _runtime_before.clear()
    _runtime_after.clear()
    reset()


def report_error(exc: BaseException, entry: Any) -> None:
    """Hand an error that cannot be raised to ``ON_ERROR(exc, entry)``, or log it without PII."""
    handler = audit_settings.ON_ERROR
    if handler is not None:
        try:
            handler(exc, entry)
            return
        except Exception:
            logger.exception("BETTER_AUDIT['ON_ERROR'] raised while reporting an audit error.")
    # Only the kind of error and where it happened: the message and the entry may hold personal
    # data that has no place in application logs.
    logger.error(
        "Audit entry %s (%s on %s) failed: %s. Set BETTER_AUDIT['ON_ERROR'] to handle it.",
        getattr(entry, "id", None),
        getattr(entry, "operation", None),
        getattr(entry, "table_name", None),
        type(exc).__name__,
    )
