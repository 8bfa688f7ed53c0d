"""The same row in one table per variant; only how (and whether) its changes are audited differs.

``PlainRow`` is the baseline; ``AuditedRow`` is listed in ``BETTER_AUDIT["TABLES"]``;
``AuditlogRow`` is registered with django-auditlog; ``HistoryRow`` has django-simple-history's
``HistoricalRecords``; ``PghistoryRow`` is tracked by django-pghistory's triggers (inserts,
updates and deletes). The two tenant models compare the same pair inside a tenant scope.
"""

from __future__ import annotations

import pghistory
from django.db import models
from simple_history.models import HistoricalRecords

from better_tenant.models import TenantModel


class BenchRow(models.Model):
    name = models.CharField(max_length=100)
    amount = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    qty = models.IntegerField(default=0)
    flag = models.BooleanField(default=False)
    note = models.TextField(blank=True, default="")
    batch = models.IntegerField(default=0, db_index=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return self.name


class PlainRow(BenchRow):
    class Meta:
        db_table = "bench_plain"


class AuditedRow(BenchRow):
    class Meta:
        db_table = "bench_audited"


class AuditlogRow(BenchRow):
    class Meta:
        db_table = "bench_auditlog"


class HistoryRow(BenchRow):
    history = HistoricalRecords(table_name="bench_history_log")

    class Meta:
        db_table = "bench_history"


@pghistory.track(
    pghistory.InsertEvent(),
    pghistory.UpdateEvent(),
    pghistory.DeleteEvent(),
    model_name="PghistoryRowEvent",
)
class PghistoryRow(BenchRow):
    class Meta:
        db_table = "bench_pghistory"


class TenantPlainRow(BenchRow, TenantModel):
    class Meta:
        db_table = "bench_tenant_plain"


class TenantAuditedRow(BenchRow, TenantModel):
    class Meta:
        db_table = "bench_tenant_audited"
