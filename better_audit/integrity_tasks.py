"""Celery tasks that keep the audit hash chain sealed and checked (``better_audit.integrity``).

Schedule them with Celery beat, e.g.::

    CELERY_BEAT_SCHEDULE = {
        "seal-audit-trail": {"task": "better_audit.seal", "schedule": 60.0},
        "verify-audit-trail": {"task": "better_audit.verify", "schedule": 86400.0},
    }

or from cron, without Celery: ``* * * * * manage.py better_audit verify`` seals before checking.
Entries are protected from the moment they are sealed, so the seal interval is the window in
which a fresh entry could be removed unnoticed.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

logger = logging.getLogger("better_audit")


@shared_task(name="better_audit.seal", ignore_result=True)
def seal_audit_trail(batch_size: int | None = None, using: str | None = None) -> int:
    """Seal every chain's pending entries; returns how many were sealed."""
    from better_audit import integrity

    return integrity.seal(batch_size=batch_size, using=using)


@shared_task(name="better_audit.verify")
def verify_audit_trail(using: str | None = None) -> dict[str, Any]:
    """Seal, then verify every chain; a broken chain is logged as an error. Returns the report."""
    from better_audit import integrity

    report = integrity.verify(using=using)
    if not report.ok:
        logger.error("Audit trail verification failed: %s", report.message)
    return report.as_dict()
