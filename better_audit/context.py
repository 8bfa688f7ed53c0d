"""Audit context: who acts and why, carried by a contextvar through requests, tasks and commands."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Any

from better_core.scope import Scope

_FIELDS = ("actor_id", "label", "reason", "description", "compliance", "metadata", "correlation_id")


@dataclass(frozen=True)
class AuditContext:
    """Fields that every audit entry written inside the scope receives (per-call values win).

    ``actor`` may be a callable: it is called when an entry is written, so an actor that is only
    known after authentication (DRF token or JWT authentication runs inside the view) is seen.
    """

    actor_id: str | None = None
    label: str | None = None
    reason: str | None = None
    description: str | None = None
    compliance: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    correlation_id: str | None = None
    actor: Callable[[], Any] | None = field(default=None, compare=False, repr=False)

    def resolve_actor_id(self) -> str | None:
        """The actor id, calling the lazy actor if there is no fixed one."""
        if self.actor_id is not None:
            return self.actor_id
        if self.actor is not None:
            value = self.actor()
            return None if value in (None, "") else str(value)
        return None

    def as_dict(self) -> dict[str, Any]:
        """Plain, serializable fields (the lazy actor resolved), e.g. for Celery headers."""
        return {
            "actor_id": self.resolve_actor_id(),
            "label": self.label,
            "reason": self.reason,
            "description": self.description,
            "compliance": list(self.compliance),
            "metadata": dict(self.metadata),
            "correlation_id": self.correlation_id,
        }


_current: ContextVar[AuditContext | None] = ContextVar("better_audit_context", default=None)


def get_audit_context() -> AuditContext | None:
    """The current audit context, or None outside any scope."""
    return _current.get()


def _normalise(values: dict[str, Any]) -> dict[str, Any]:
    unknown = set(values) - set(_FIELDS) - {"actor"}
    if unknown:
        raise TypeError(
            f"Unknown audit context field(s): {', '.join(sorted(unknown))}. "
            f"Allowed: {', '.join(_FIELDS)}, actor."
        )
    out = dict(values)
    if "actor_id" in out and out["actor_id"] is not None:
        out["actor_id"] = str(out["actor_id"])
    if "compliance" in out:
        tags = out["compliance"] or ()
        if isinstance(tags, str):
            tags = (tags,)
        out["compliance"] = tuple(dict.fromkeys(str(t) for t in tags))
    if "metadata" in out:
        metadata = out["metadata"] or {}
        if not isinstance(metadata, dict):
            raise TypeError("metadata must be a dict.")
        out["metadata"] = dict(metadata)
    return out


class _ContextScope(Scope):
    def __init__(self, build: Callable[[AuditContext | None], AuditContext]) -> None:
        self.build = build

    def enter(self) -> AuditContext:
        self.previous = _current.get()
        context = self.build(self.previous)
        _current.set(context)
        return context

    def exit(self, exc: BaseException | None) -> None:
        _current.set(self.previous)


def audit_context(**fields: Any) -> Scope:
    """A fresh context for the block (jobs, commands, scripts): with, async with or decorator.

    A correlation id is generated when none is given, so the block's entries can be grouped.
    """
    values = _normalise(fields)
    values.setdefault("correlation_id", str(uuid.uuid4()))
    return _ContextScope(lambda previous: AuditContext(**values))


def merge_audit_context(**fields: Any) -> Scope:
    """Override fields of the current context for the block; metadata dicts are merged."""
    values = _normalise(fields)

    def build(previous: AuditContext | None) -> AuditContext:
        base = previous or AuditContext(correlation_id=str(uuid.uuid4()))
        merged = dict(values)
        if "metadata" in merged:
            merged["metadata"] = {**base.metadata, **merged["metadata"]}
        if "actor_id" in merged and "actor" not in merged:
            merged["actor"] = None
        return replace(base, **merged)

    return _ContextScope(build)


def set_audit_context(context: AuditContext | None) -> Any:
    """Low-level: install ``context`` and return the token (middleware and task integration)."""
    return _current.set(context)


def reset_audit_context(token: Any) -> None:
    _current.reset(token)
