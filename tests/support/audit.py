"""Audit rows as the tests read them: in system mode, in the order they were written."""

from __future__ import annotations

from typing import Any

from better_audit.models import AuditLog
from better_tenant import run_as_system


def logs(**filters: Any) -> list[AuditLog]:
    """Audit rows matching ``filters``, read in system mode (every tenant and no tenant)."""
    with run_as_system():
        rows = list(AuditLog.objects.filter(**filters))
    return sorted(rows, key=lambda row: (row.timestamp, _numeric(row.record_id)))


def _numeric(value: str) -> Any:
    return (0, int(value), "") if value.isdigit() else (1, 0, value)
