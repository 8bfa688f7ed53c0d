"""The audited table of the no_tenant project: a plain model, no tenant column."""

from django.db import models


class Order(models.Model):
    number = models.CharField(max_length=40)
    total = models.IntegerField(default=0)

    class Meta:
        db_table = "no_tenant_orders"

    def __str__(self) -> str:
        return self.number
