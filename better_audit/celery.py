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
from dataclasses import replace
from typing import Any

from better_audit.conf import audit_settings
from better_audit.context import (
    AuditContext,
    get_audit_context,
    reset_audit_context,
    set_audit_context,
)

HEADER = "better_audit_context"

logger = logging.getLogger(__name__)

_PUBLISH_UID = "better_audit.celery.add_context_header"
_PRERUN_UID = "better_audit.celery.enter_task_context"
_POSTRUN_UID = "better_audit.celery.leave_task_context"
_TOKENS_ATTR = "_better_audit_tokens"
_TEXT_FIELDS = ("actor_id", "label", "reason", "description", "correlation_id")


class InvalidContextHeader(ValueError):
    """The ``better_audit_context`` header of a task message is not a context."""


def connect() -> None:
    """Connect the Celery signal receivers when Celery is installed (idempotent)."""
    try:
        from celery import signals
    except ImportError:
        return
    signals.before_task_publish.connect(_add_context_header, weak=False, dispatch_uid=_PUBLISH_UID)
    signals.task_prerun.connect(_enter_task_context, weak=False, dispatch_uid=_PRERUN_UID)
    signals.task_postrun.connect(_leave_task_context, weak=False, dispatch_uid=_POSTRUN_UID)


def disconnect() -> None:
    """Undo ``connect()``."""
    try:
        from celery import signals
    except ImportError:
        return
    signals.before_task_publish.disconnect(dispatch_uid=_PUBLISH_UID)
    signals.task_prerun.disconnect(dispatch_uid=_PRERUN_UID)
    signals.task_postrun.disconnect(dispatch_uid=_POSTRUN_UID)


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


def _add_context_header(headers: dict | None = None, **_: Any) -> None:
    if headers is None or HEADER in headers or not audit_settings.CELERY:
        return
    context = get_audit_context()
    if context is not None:
        headers[HEADER] = context_to_header(context)


def _header_value(request: Any) -> Any:
    value = getattr(request, HEADER, None)
    if value is None:
        # Eager calls keep headers given to apply()/apply_async() in request.headers.
        value = (getattr(request, "headers", None) or {}).get(HEADER)
    return value


def _task_context(task: Any, request: Any) -> AuditContext:
    value = _header_value(request)
    base: AuditContext | None = None
    if value is not None:
        try:
            base = context_from_header(value)
        except InvalidContextHeader as exc:
            logger.error(
                "Task %s[%s] has an invalid %s header (%s); it runs with no actor. Send tasks "
                "inside an audit context, or give the header the shape of "
                "AuditContext.as_dict().",
                task.name,
                getattr(request, "id", None),
                HEADER,
                exc,
            )
    elif getattr(request, "is_eager", False):
        base = get_audit_context()
    task_id = getattr(request, "id", None)
    if base is None:
        base = AuditContext(correlation_id=getattr(request, "root_id", None) or task_id)
    return replace(base, metadata={**base.metadata, "task": task.name, "task_id": task_id})


def _enter_task_context(sender: Any = None, task: Any = None, **_: Any) -> None:
    task = task or sender
    if task is None or not audit_settings.CELERY:
        return
    request = task.request
    token = set_audit_context(_task_context(task, request))
    request.__dict__.setdefault(_TOKENS_ATTR, []).append(token)


def _leave_task_context(sender: Any = None, task: Any = None, **_: Any) -> None:
    task = task or sender
    if task is None:
        return
    tokens = task.request.__dict__.get(_TOKENS_ATTR)
    if not tokens:
        return
    token = tokens.pop()
    try:
        reset_audit_context(token)
    except ValueError:
        # Set in another context (a pool that runs the signals apart): clear it instead.
        set_audit_context(None)
