"""Celery tasks of the audit tests: they report the audit context they run in."""

from __future__ import annotations

from typing import Any

from better_audit.context import get_audit_context
from tests.testapp.celery import app


@app.task(name="tests.audit.tasks.audit_snapshot")
def audit_snapshot() -> dict[str, Any] | None:
    """The task's audit context as a dict, or None without one."""
    context = get_audit_context()
    return None if context is None else context.as_dict()


@app.task(name="tests.audit.tasks.nested_snapshot", bind=True)
def nested_snapshot(self: Any) -> dict[str, Any]:
    """Send ``audit_snapshot`` from inside a task: the context travels one hop further."""
    queue = (self.request.delivery_info or {}).get("routing_key")
    inner = audit_snapshot.apply_async(queue=queue) if queue else audit_snapshot.apply_async()
    return {"outer": get_audit_context().as_dict(), "inner_id": inner.id}
