"""Carry the sender's tenant to Celery tasks and run them under run_as in the worker.

How it works:

- ``before_task_publish``: a task published inside ``run_as(tenant)`` gets the message header
  ``better_tenant_id`` holding the tenant's UUID. A header the caller set explicitly
  (``apply_async(headers={"better_tenant_id": ...})``) is kept, so system code can address a
  task to one tenant without opening a scope for it.
- ``task_prerun``: the worker enters ``run_as(<header>)`` around the task body. A task without
  the header runs inside ``no_tenant()``: it sees no tenant rows and cannot insert any.
- ``task_postrun``: the scope's transaction commits when the task succeeded (or stopped with
  ``Ignore``, which ``Task.replace`` uses) and rolls back on failure, retry, rejection or an
  error raised by Celery itself.

A header that is not a UUID (a message forged or written by other software) does not stop the
worker: the task runs inside ``no_tenant()``, so it is fail-closed, and an error naming the task
and the value is logged.

System mode is not carried on purpose. A system-mode task can read and change every tenant's
rows, and a message header is not an authorisation: whoever can write to the broker, or any code
that happens to enqueue a task while inside ``run_as_system()`` (an admin action, a signal
receiver during tenant creation), would hand that power to a task written for one tenant. A task
that needs to work across tenants says so in its own code with ``run_as_system()``.

Eager mode (``task_always_eager`` or ``Task.apply``) publishes nothing, so the scope is taken from
the caller: the caller's tenant, or no tenant when the caller is in system mode or has no scope.
The task body runs in its own transaction (a savepoint when the caller is inside one) and is
rolled back on failure, as in a worker.

Two orderings worth knowing:

- Celery stores a task's result before ``task_postrun`` runs, so a client woken by
  ``AsyncResult.get()`` may query the database a moment before the task's transaction commits.
  Return what the client needs from the task rather than reading it back immediately.
- A task sent inside a scope reaches the broker before the scope's transaction commits, so the
  worker may not yet see rows written just before sending. ``send_on_commit(signature)`` sends
  it after the commit and still carries the tenant (``transaction.on_commit`` and Celery's
  ``delay_on_commit`` run after the scope has ended and would send it with no tenant).
"""

from __future__ import annotations

import contextvars
import logging
from typing import Any

from django.db import transaction

from better_tenant.context import get_context, no_tenant, run_as, to_tenant_id
from better_tenant.exceptions import InvalidTenantId

HEADER = "better_tenant_id"

logger = logging.getLogger(__name__)

_PUBLISH_UID = "better_tenant.celery.add_tenant_header"
_PRERUN_UID = "better_tenant.celery.enter_tenant_scope"
_POSTRUN_UID = "better_tenant.celery.leave_tenant_scope"
_ORDER_UID = "better_tenant.celery.order_receivers"
_SCOPE_ATTR = "_better_tenant_scope"
# Ignore is how Task.replace() ends a task whose body completed; Reject and the error states
# mean the work did not complete.
_COMMIT_STATES = frozenset({"SUCCESS", "IGNORED"})


class TaskDidNotSucceed(Exception):
    """Passed to the scope's exit so that its transaction rolls back."""


def connect() -> None:
    """Connect the Celery signal receivers when Celery is installed (idempotent)."""
    try:
        from celery import signals
    except ImportError:
        return
    signals.before_task_publish.connect(_add_tenant_header, weak=False, dispatch_uid=_PUBLISH_UID)
    signals.task_prerun.connect(_enter_tenant_scope, weak=False, dispatch_uid=_PRERUN_UID)
    signals.task_postrun.connect(_leave_tenant_scope, weak=False, dispatch_uid=_POSTRUN_UID)
    # Celery's Django fix-up closes the database connections in task_prerun and task_postrun
    # receivers that it connects when the worker starts, after ours. Closing the connection inside
    # the scope's transaction would discard the task's work, so once the fix-up is in place our
    # prerun receiver is moved behind it and our postrun receiver ahead of it. Each of these
    # signals comes after the fix-up has installed itself for some kind of worker or pool.
    for signal in (signals.worker_init, signals.celeryd_after_setup, signals.worker_process_init):
        signal.connect(_order_receivers, weak=False, dispatch_uid=_ORDER_UID)


def send_on_commit(signature: Any, *, using: str | None = None) -> None:
    """Send ``signature`` (e.g. ``task.s(1, 2)``) once the current transaction commits.

    The tenant in scope now is carried, although the scope has ended when the commit happens.
    Outside a transaction the signature is sent at once.
    """
    captured = contextvars.copy_context()
    transaction.on_commit(lambda: captured.run(signature.apply_async), using=using)


def _add_tenant_header(headers: dict | None = None, **_: Any) -> None:
    if headers is None or HEADER in headers:
        return
    context = get_context()
    if context.tenant_id is not None and not context.is_system:
        headers[HEADER] = str(context.tenant_id)


def _header_value(request: Any) -> Any:
    value = getattr(request, HEADER, None)
    if value is None:
        # Eager calls keep headers given to apply()/apply_async() in request.headers.
        value = (getattr(request, "headers", None) or {}).get(HEADER)
    return value


def _target_scope(task: Any, request: Any) -> Any:
    value = _header_value(request)
    if value is None:
        if getattr(request, "is_eager", False):
            context = get_context()
            if context.tenant_id is not None and not context.is_system:
                return run_as(context.tenant_id)
        return no_tenant()
    try:
        return run_as(to_tenant_id(value))
    except InvalidTenantId:
        logger.error(
            "Task %s[%s] has the header %s=%r, which is not a tenant UUID; it runs with no tenant "
            "and sees no tenant rows. Send tenant tasks inside better_tenant.run_as(tenant) or "
            "set the header to the tenant's UUID.",
            task.name,
            getattr(request, "id", None),
            HEADER,
            value,
        )
        return no_tenant()


def _enter_tenant_scope(sender: Any = None, task: Any = None, **_: Any) -> None:
    task = task or sender
    request = task.request
    scope = _target_scope(task, request)
    scope.__enter__()
    setattr(request, _SCOPE_ATTR, scope)


def _leave_tenant_scope(
    sender: Any = None, task: Any = None, state: str | None = None, **_: Any
) -> None:
    task = task or sender
    request = task.request
    scope = getattr(request, _SCOPE_ATTR, None)
    if scope is None:
        return
    delattr(request, _SCOPE_ATTR)
    if state in _COMMIT_STATES:
        try:
            scope.__exit__(None, None, None)
        except Exception:
            logger.exception(
                "Task %s[%s] finished with state %s but committing its database work failed; "
                "its changes are lost. Check the database log for the cause.",
                task.name,
                getattr(request, "id", None),
                state,
            )
        return
    failure = TaskDidNotSucceed(f"Task {task.name} ended in state {state}; rolling back.")
    scope.__exit__(TaskDidNotSucceed, failure, None)


def _order_receivers(**_: Any) -> None:
    from celery import signals

    _move_receiver(signals.task_prerun, _PRERUN_UID, last=True)
    _move_receiver(signals.task_postrun, _POSTRUN_UID, last=False)


def _move_receiver(signal: Any, dispatch_uid: str, *, last: bool) -> None:
    with signal.lock:
        ours = [entry for entry in signal.receivers if entry[0][0] == dispatch_uid]
        if not ours:
            return
        others = [entry for entry in signal.receivers if entry[0][0] != dispatch_uid]
        signal.receivers[:] = others + ours if last else ours + others
        signal.sender_receivers_cache.clear()
