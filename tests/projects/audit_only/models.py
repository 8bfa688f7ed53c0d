"""The audited table of the audit_only project: a plain model, no tenant column."""

from django.db import models


class Order(models.Model):
    number = models.CharField(max_length=40)
    total = models.IntegerField(default=0)

    class Meta:
        db_table = "audit_only_orders"

    def __str__(self) -> str:
        return self.number
