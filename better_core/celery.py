"""Carry context from the code that sends a Celery task to the worker that runs it, in headers.

An app registers a ``HeaderPropagator``: ``capture()`` gives the value of its message header when
a task is published (None adds no header), ``enter(task, value)`` opens the task's scope from the
header's value before the body runs, and ``exit(task, entered, state)`` closes it afterwards. One
set of signal receivers serves every registered propagator:

- ``before_task_publish``: each propagator's header is added unless the caller set it explicitly
  (``apply_async(headers={...})``), so code can address a task without opening a scope for it.
- ``task_prerun``: each propagator is entered with its header's value, or None when the message
  has none. Eager calls (``Task.apply``) keep the headers given to them in ``request.headers``.
- ``task_postrun``: the propagators are left in the reverse order, with the task's final state.

Propagators whose scope uses the database (``uses_database``) are entered after the others and
left before them, so that what runs when their transaction commits still sees the others' scope.

Celery's Django fix-up closes the database connections in ``task_prerun`` and ``task_postrun``
receivers that it connects when the worker starts, after ours. Closing the connection inside a
scope's transaction would discard the task's work, so once the fix-up is in place the prerun
receiver is moved behind it and the postrun receiver ahead of it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

PUBLISH_UID = "better_core.celery.add_headers"
PRERUN_UID = "better_core.celery.enter_scopes"
POSTRUN_UID = "better_core.celery.leave_scopes"
ORDER_UID = "better_core.celery.order_receivers"
_ENTERED_ATTR = "_better_core_entered"


@dataclass(frozen=True)
class HeaderPropagator:
    """How one app carries its context in the message header ``header``."""

    header: str
    #: The header's value for a task published now, or None to add no header.
    capture: Callable[[], Any]
    #: Open the task's scope from the header's value (None without a header); the result is
    #: handed to ``exit``, and None means there is nothing to close.
    enter: Callable[[Any, Any], Any]
    #: Close what ``enter`` returned: ``exit(task, entered, state)``; state is Celery's final
    #: task state (``SUCCESS``, ``FAILURE``, ``RETRY``, ``IGNORED``...) or None.
    exit: Callable[[Any, Any, str | None], None]
    #: True when the scope opens a database transaction (see the module's docstring).
    uses_database: bool = False


_propagators: dict[str, HeaderPropagator] = {}


def register(propagator: HeaderPropagator) -> None:
    """Carry ``propagator``'s header from now on (replaces one registered for the same header)."""
    _propagators[propagator.header] = propagator


def unregister(header: str) -> None:
    """Stop carrying ``header``; tasks already running are still closed."""
    _propagators.pop(header, None)


def propagators() -> list[HeaderPropagator]:
    """The registered propagators in the order they are entered."""
    return sorted(_propagators.values(), key=lambda propagator: propagator.uses_database)


def connect() -> None:
    """Connect the Celery signal receivers when Celery is installed (idempotent)."""
    try:
        from celery import signals
    except ImportError:
        return
    signals.before_task_publish.connect(add_headers, weak=False, dispatch_uid=PUBLISH_UID)
    signals.task_prerun.connect(_enter_scopes, weak=False, dispatch_uid=PRERUN_UID)
    signals.task_postrun.connect(_leave_scopes, weak=False, dispatch_uid=POSTRUN_UID)
    # Each of these signals comes after the Django fix-up has installed itself for some kind of
    # worker or pool.
    for signal in (signals.worker_init, signals.celeryd_after_setup, signals.worker_process_init):
        signal.connect(_order_receivers, weak=False, dispatch_uid=ORDER_UID)


def add_headers(headers: dict | None = None, **_: Any) -> None:
    """``before_task_publish`` receiver: add each propagator's header the caller did not set."""
    if headers is None:
        return
    for propagator in propagators():
        if propagator.header in headers:
            continue
        value = propagator.capture()
        if value is not None:
            headers[propagator.header] = value


def header_value(request: Any, header: str) -> Any:
    """The value of the message header ``header`` of a task's request, or None."""
    value = getattr(request, header, None)
    if value is None:
        # Eager calls keep headers given to apply()/apply_async() in request.headers.
        value = (getattr(request, "headers", None) or {}).get(header)
    return value


def task_label(task: Any) -> str:
    """``name[id]`` of a running task, for log messages."""
    return f"{task.name}[{getattr(task.request, 'id', None)}]"


def _enter_scopes(sender: Any = None, task: Any = None, **_: Any) -> None:
    task = task or sender
    if task is None:
        return
    request = task.request
    entered: list[tuple[HeaderPropagator, Any]] = []
    for propagator in propagators():
        try:
            handle = propagator.enter(task, header_value(request, propagator.header))
        except Exception:
            # One app's failure must not keep the others from opening their scopes.
            logger.exception(
                "Opening the %s scope of task %s failed.", propagator.header, task_label(task)
            )
            continue
        if handle is not None:
            entered.append((propagator, handle))
    request.__dict__.setdefault(_ENTERED_ATTR, []).append(entered)


def _leave_scopes(sender: Any = None, task: Any = None, state: str | None = None, **_: Any) -> None:
    task = task or sender
    if task is None:
        return
    stack = task.request.__dict__.get(_ENTERED_ATTR)
    if not stack:
        return
    for propagator, handle in reversed(stack.pop()):
        try:
            propagator.exit(task, handle, state)
        except Exception:
            logger.exception(
                "Closing the %s scope of task %s failed.", propagator.header, task_label(task)
            )


def _order_receivers(**_: Any) -> None:
    from celery import signals

    _move_receiver(signals.task_prerun, PRERUN_UID, last=True)
    _move_receiver(signals.task_postrun, POSTRUN_UID, last=False)


def _move_receiver(signal: Any, dispatch_uid: str, *, last: bool) -> None:
    with signal.lock:
        ours = [entry for entry in signal.receivers if entry[0][0] == dispatch_uid]
        if not ours:
            return
        others = [entry for entry in signal.receivers if entry[0][0] != dispatch_uid]
        signal.receivers[:] = others + ours if last else ours + others
        signal.sender_receivers_cache.clear()
