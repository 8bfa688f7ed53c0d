"""The audit trail: one ``audit_logs`` row per inserted, updated or deleted row of a table."""

from __future__ import annotations

import uuid

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils import timezone

OPERATIONS = ("INSERT", "UPDATE", "DELETE")
SEVERITIES = ("low", "medium", "high", "critical")


class AuditLog(models.Model):
    """One change to one row.

    ``before_data`` / ``after_data`` hold the row as PostgreSQL renders it with ``to_jsonb`` (column
    names as keys): an INSERT has no before, a DELETE no after. ``diff`` is
    ``{"changed_fields": [...]}`` for updates whose before-state was read. ``tenant_id`` is the
    changed row's tenant (or the tenant in scope); it has no foreign key so that the trail outlives
    a deleted tenant. With better_tenant installed the table is under row-level security: a tenant
    reads only its own rows, system mode reads all, and the application role may insert but never
    update or delete.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    timestamp = models.DateTimeField(default=timezone.now)
    table_name = models.TextField()
    operation = models.CharField(max_length=6, choices=[(op, op) for op in OPERATIONS])
    record_id = models.TextField()
    actor_id = models.TextField(null=True, blank=True)
    before_data = models.JSONField(null=True, blank=True)
    after_data = models.JSONField(null=True, blank=True)
    diff = models.JSONField(null=True, blank=True)
    label = models.TextField(null=True, blank=True)
    description = models.TextField(null=True, blank=True)
    severity = models.CharField(
        max_length=8, null=True, blank=True, choices=[(s, s) for s in SEVERITIES]
    )
    compliance = ArrayField(models.TextField(), default=list, blank=True)
    notify = models.BooleanField(null=True, blank=True)
    reason = models.TextField(null=True, blank=True)
    metadata = models.JSONField(null=True, blank=True)
    redacted_fields = ArrayField(models.TextField(), default=list, blank=True)
    correlation_id = models.TextField(null=True, blank=True)
    tenant_id = models.UUIDField(null=True, blank=True)

    class Meta:
        db_table = "audit_logs"
        verbose_name = "audit log entry"
        verbose_name_plural = "audit log"
        indexes = [
            models.Index(fields=["timestamp"], name="audit_logs_timestamp_idx"),
            models.Index(fields=["table_name", "record_id"], name="audit_logs_record_idx"),
            models.Index(fields=["actor_id"], name="audit_logs_actor_idx"),
            models.Index(fields=["tenant_id", "timestamp"], name="audit_logs_tenant_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(operation__in=OPERATIONS), name="audit_logs_operation_check"
            ),
            models.CheckConstraint(
                condition=models.Q(severity__isnull=True) | models.Q(severity__in=SEVERITIES),
                name="audit_logs_severity_check",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.operation} {self.table_name} {self.record_id}"
