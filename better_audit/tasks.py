"""Celery task of ``ASYNC_WRITE``: audit entries inserted after the change's transaction commits."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.db import DatabaseError

# Celery's autodiscovery imports <app>.tasks only: this registers the sealing tasks beside it.
from better_audit import integrity_tasks  # noqa: F401

MAX_RETRIES = 3


@shared_task(bind=True, name="better_audit.write_entries", ignore_result=True)
def write_entries(self: Any, payload: list[dict[str, Any]], using: str = "default") -> int:
    """Insert the entries (each carries its tenant), then run the AFTER_LOG hooks.

    The INSERT is idempotent (entry ids are fixed when the entries are built), so a redelivered or
    retried message writes nothing twice, and its hooks do not run again. Database errors are
    retried with backoff; the last failure goes to ``ON_ERROR`` once per entry. Returns the number
    of rows written.
    """
    from better_audit import hooks, writer

    entries = [writer.AuditEntry.from_dict(item) for item in payload]
    try:
        written = writer.insert_as_system(entries, using)
    except DatabaseError as exc:
        if self.request.retries < MAX_RETRIES and not self.request.is_eager:
            raise self.retry(
                exc=exc, countdown=2**self.request.retries, max_retries=MAX_RETRIES
            ) from exc
        for entry in entries:
            hooks.report_error(exc, entry)
        return 0
    if written:
        writer.run_after_hooks(entries)
    return written
