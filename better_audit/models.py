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
    reads only its own rows, system mode reads all. Only the owner's functions insert
    (``better_audit.trail``); no role but the admin role's purge may delete, none may update.
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
        # No CHECK constraints: PostgreSQL re-reads them for every statement that inserts, the
        # most expensive part of writing an entry. The only writers, better_audit.trail's
        # functions, keep operation and severity to their values themselves.

    def __str__(self) -> str:
        return f"{self.operation} {self.table_name} {self.record_id}"


class AuditSeal(models.Model):
    """One link of a tenant's hash chain: the seal of one audit entry (``better_audit.integrity``).

    Kept after its entry is purged (``purge_id`` then names the purge anchor), so the chain stays
    recomputable. Written and read only in the admin role.
    """

    entry_id = models.UUIDField(primary_key=True)
    # The tenant whose chain this is (None: entries without a tenant); not named tenant_id, as
    # these rows are no tenant's data and carry no tenant policy.
    chain = models.UUIDField(null=True, blank=True)
    seq = models.BigIntegerField()
    entry_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)
    sealed_at = models.DateTimeField()
    purge_id = models.UUIDField(null=True, blank=True)

    class Meta:
        db_table = "audit_log_seals"
        verbose_name = "audit seal"
        constraints = [
            models.UniqueConstraint(
                fields=["chain", "seq"], name="audit_log_seals_chain_seq", nulls_distinct=False
            ),
        ]

    def __str__(self) -> str:
        return f"{self.chain or 'global'}#{self.seq}"


class AuditPurge(models.Model):
    """A purge anchor: one batch of entries of one chain deleted by ``integrity.purge``."""

    id = models.UUIDField(primary_key=True)
    run_id = models.UUIDField()
    chain = models.UUIDField(null=True, blank=True)
    cutoff = models.DateTimeField()
    tables = ArrayField(models.TextField(), null=True, blank=True)
    first_seq = models.BigIntegerField()
    last_seq = models.BigIntegerField()
    last_hash = models.CharField(max_length=64)
    purged_count = models.IntegerField()
    purged_at = models.DateTimeField()
    purged_by = models.TextField()

    class Meta:
        db_table = "audit_purges"
        verbose_name = "audit purge"
        indexes = [models.Index(fields=["chain", "last_seq"], name="audit_purges_chain_idx")]

    def __str__(self) -> str:
        chain = self.chain or "global"
        return f"purge {self.run_id} of {chain} #{self.first_seq}-{self.last_seq}"
