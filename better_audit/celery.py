"""Carry the audit context to Celery tasks, so their entries name the actor who sent them.

How it works:

- ``before_task_publish``: a task sent inside an audit context (a request under
  ``AuditContextMiddleware``, ``audit_context(...)``, a management command) gets the message header
  ``better_audit_context`` holding ``context.as_dict()``: the actor id is resolved at that moment,
  so a task sent from a view after authentication carries the authenticated user. A header the
  caller set explicitly (``apply_async(headers={"better_audit_context": {...}})``) is kept.
- ``task_prerun``: the worker installs that context around the task body, with
  ``{"task": <name>, "task_id": <id>}`` added to its metadata. A task without the header runs with
  no actor, and with its workflow's root task id as the correlation id.
- ``task_postrun``: the previous context is restored, so nothing leaks into the next task that
  the same worker thread runs.

Eager mode (``task_always_eager`` or ``Task.apply``) publishes nothing: the task runs in the
caller's context (plus the task's metadata), unless a header was given to ``apply``.

A header that is not a valid context (a message written by other software) does not stop the
worker: the task runs with no actor and an error naming the task is logged.
"""

from __future__ import annotations

import logging
from contextvars import Token
from dataclasses import replace
from typing import Any

from better_audit.conf import audit_settings
from better_audit.context import (
    AuditContext,
    get_audit_context,
    reset_audit_context,
    set_audit_context,
)
from better_core import celery as core_celery

HEADER = "better_audit_context"

logger = logging.getLogger(__name__)

_TEXT_FIELDS = ("actor_id", "label", "reason", "description", "correlation_id")


class InvalidContextHeader(ValueError):
    """The ``better_audit_context`` header of a task message is not a context."""


def connect() -> None:
    """Carry the audit context in task messages when Celery is installed (idempotent)."""
    core_celery.register(PROPAGATOR)
    core_celery.connect()


def disconnect() -> None:
    """Undo ``connect()``: from now on tasks neither carry nor receive the audit context."""
    core_celery.unregister(HEADER)


def context_to_header(context: AuditContext) -> dict[str, Any]:
    """The header value for ``context`` (a deferred actor is resolved now)."""
    try:
        return context.as_dict()
    except Exception:
        # The task must still be sent; its entries then lack the actor, which the log says.
        logger.exception(
            "Resolving the audit actor for a task message failed; the task is sent without an "
            "actor. Check the actor extractor or the actor callable of the audit context."
        )
        return replace(context, actor_id=None, actor=None).as_dict()


def context_from_header(value: Any) -> AuditContext:
    """Rebuild a context from a header value; raises InvalidContextHeader if it is not one."""
    if not isinstance(value, dict):
        raise InvalidContextHeader(f"expected a dict, got {type(value).__name__}")
    fields: dict[str, Any] = {}
    for name in _TEXT_FIELDS:
        item = value.get(name)
        if item is not None and not isinstance(item, str):
            raise InvalidContextHeader(f"{name} must be a string or null, got {item!r}")
        fields[name] = item
    compliance = value.get("compliance") or []
    if not isinstance(compliance, list | tuple) or not all(isinstance(t, str) for t in compliance):
        raise InvalidContextHeader(f"compliance must be a list of strings, got {compliance!r}")
    metadata = value.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise InvalidContextHeader(f"metadata must be an object, got {metadata!r}")
    return AuditContext(compliance=tuple(compliance), metadata=dict(metadata), **fields)


def _context_header() -> dict[str, Any] | None:
    if not audit_settings.CELERY:
        return None
    context = get_audit_context()
    return None if context is None else context_to_header(context)


def _task_context(task: Any, value: Any) -> AuditContext:
    request = task.request
    base: AuditContext | None = None
    if value is not None:
        try:
            base = context_from_header(value)
        except InvalidContextHeader as exc:
            logger.error(
                "Task %s has an invalid %s header (%s); it runs with no actor. Send tasks "
                "inside an audit context, or give the header the shape of "
                "AuditContext.as_dict().",
                core_celery.task_label(task),
                HEADER,
                exc,
            )
    elif getattr(request, "is_eager", False):
        base = get_audit_context()
    task_id = getattr(request, "id", None)
    if base is None:
        base = AuditContext(correlation_id=getattr(request, "root_id", None) or task_id)
    return replace(base, metadata={**base.metadata, "task": task.name, "task_id": task_id})


def _enter_task_context(task: Any, value: Any) -> Token | None:
    if not audit_settings.CELERY:
        return None
    return set_audit_context(_task_context(task, value))


def _leave_task_context(task: Any, token: Token, state: str | None) -> None:
    try:
        reset_audit_context(token)
    except ValueError:
        # Set in another context (a pool that runs the signals apart): clear it instead.
        set_audit_context(None)


PROPAGATOR = core_celery.HeaderPropagator(
    header=HEADER,
    capture=_context_header,
    enter=_enter_task_context,
    exit=_leave_task_context,
)
