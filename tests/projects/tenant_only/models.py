"""The tenant table of the tenant_only project."""

from django.db import models

from better_tenant.models import TenantModel


class Note(TenantModel):
    title = models.CharField(max_length=200)

    class Meta:
        db_table = "tenant_only_notes"
