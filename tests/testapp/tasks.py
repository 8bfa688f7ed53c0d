"""Celery tasks of the test suite; better_tenant runs each one as the sender's tenant."""

from __future__ import annotations

from typing import Any

from better_tenant import get_context
from tests.testapp.celery import app
from tests.testapp.models import Note


@app.task(name="tests.testapp.tasks.note_summary")
def note_summary() -> dict[str, Any]:
    """What the task sees: its tenant scope and the titles of the notes visible in it."""
    context = get_context()
    return {
        "tenant_id": str(context.tenant_id) if context.tenant_id else None,
        "is_system": context.is_system,
        "titles": sorted(Note.objects.values_list("title", flat=True)),
    }


@app.task(name="tests.testapp.tasks.create_note")
def create_note(title: str, fail: bool = False) -> dict[str, str]:
    """Create a note in the task's tenant; ``fail`` raises afterwards (its insert is undone)."""
    note = Note.objects.create(title=title)
    if fail:
        raise RuntimeError(f"Note {title!r} was created, then the task failed on purpose.")
    return {"id": str(note.pk), "tenant_id": str(note.tenant_id)}


@app.task(name="tests.testapp.tasks.create_note_retrying", bind=True, max_retries=1)
def create_note_retrying(self: Any, title: str) -> str:
    """Create ``<title>-<attempt>`` and retry once: the first attempt's note is rolled back."""
    attempt = self.request.retries
    Note.objects.create(title=f"{title}-{attempt}")
    if attempt == 0:
        raise self.retry(countdown=0)
    return f"{title}-{attempt}"
