"""Tenant-scoped and shared models exercised by the tests."""

from django.db import models

from better_tenant.models import TenantModel


class Note(TenantModel):
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True, default="")
    score = models.IntegerField(default=0)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "test_notes"
        indexes = [models.Index(fields=["tenant", "created"], name="test_notes_tenant_created")]


class Comment(TenantModel):
    note = models.ForeignKey(Note, on_delete=models.CASCADE, related_name="comments")
    text = models.CharField(max_length=200)

    class Meta:
        db_table = "test_comments"


class Country(models.Model):
    """A shared lookup table without tenant_id: visible to every tenant."""

    code = models.CharField(max_length=2, unique=True)

    class Meta:
        db_table = "test_countries"
