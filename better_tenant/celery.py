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
import uuid
from typing import Any

from django.db import transaction

from better_core import celery as core_celery
from better_tenant.context import get_context, no_tenant, run_as, to_tenant_id
from better_tenant.exceptions import InvalidTenantId

HEADER = "better_tenant_id"

logger = logging.getLogger(__name__)

# Ignore is how Task.replace() ends a task whose body completed; Reject and the error states
# mean the work did not complete.
_COMMIT_STATES = frozenset({"SUCCESS", "IGNORED"})


class TaskDidNotSucceed(Exception):
    """Passed to the scope's exit so that its transaction rolls back."""


def connect() -> None:
    """Carry the tenant in task messages when Celery is installed (idempotent).

    The receivers are ``better_core.celery``'s, shared with the other apps; they run the scope's
    transaction after Celery's Django fix-up has closed stale connections, and commit it before
    the fix-up closes them again.
    """
    core_celery.register(PROPAGATOR)
    core_celery.connect()


def send_on_commit(signature: Any, *, using: str | None = None) -> None:
    """Send ``signature`` (e.g. ``task.s(1, 2)``) once the current transaction commits.

    The tenant in scope now is carried, although the scope has ended when the commit happens.
    Outside a transaction the signature is sent at once.
    """
    captured = contextvars.copy_context()
    transaction.on_commit(lambda: captured.run(signature.apply_async), using=using)


def _carried_tenant_id() -> uuid.UUID | None:
    # System mode is never carried (see the module's docstring).
    context = get_context()
    return context.tenant_id if not context.is_system else None


def _tenant_header() -> str | None:
    tenant_id = _carried_tenant_id()
    return None if tenant_id is None else str(tenant_id)


def _target_scope(task: Any, value: Any) -> Any:
    if value is None:
        if getattr(task.request, "is_eager", False):
            tenant_id = _carried_tenant_id()
            if tenant_id is not None:
                return run_as(tenant_id)
        return no_tenant()
    try:
        return run_as(to_tenant_id(value))
    except InvalidTenantId:
        logger.error(
            "Task %s has the header %s=%r, which is not a tenant UUID; it runs with no tenant "
            "and sees no tenant rows. Send tenant tasks inside better_tenant.run_as(tenant) or "
            "set the header to the tenant's UUID.",
            core_celery.task_label(task),
            HEADER,
            value,
        )
        return no_tenant()


def _enter_tenant_scope(task: Any, value: Any) -> Any:
    scope = _target_scope(task, value)
    scope.__enter__()
    return scope


def _leave_tenant_scope(task: Any, scope: Any, state: str | None) -> None:
    if state in _COMMIT_STATES:
        try:
            scope.__exit__(None, None, None)
        except Exception:
            logger.exception(
                "Task %s finished with state %s but committing its database work failed; "
                "its changes are lost. Check the database log for the cause.",
                core_celery.task_label(task),
                state,
            )
        return
    failure = TaskDidNotSucceed(f"Task {task.name} ended in state {state}; rolling back.")
    scope.__exit__(TaskDidNotSucceed, failure, None)


PROPAGATOR = core_celery.HeaderPropagator(
    header=HEADER,
    capture=_tenant_header,
    enter=_enter_tenant_scope,
    exit=_leave_tenant_scope,
    uses_database=True,
)
