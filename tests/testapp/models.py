"""Tenant-scoped and shared models exercised by the tests."""

import uuid

from django.conf import settings
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

    def __str__(self) -> str:
        return self.code


class Membership(TenantModel):
    """A user's role in one tenant, under row-level security: better_tenant's membership() check."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    role = models.CharField(max_length=10, default="member")

    class Meta:
        db_table = "test_memberships"
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "user"], name="test_memberships_tenant_user_uniq"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} ({self.role})"


# --- audited by better_audit (BETTER_AUDIT["TABLES"] in tests/settings.py) ----------------------


class Invoice(TenantModel):
    """A tenant table with a column of each common type."""

    number = models.CharField(max_length=40)
    amount = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    secret = models.CharField(max_length=100, blank=True, default="")
    paid = models.BooleanField(default=False)
    ratio = models.FloatField(null=True, blank=True)
    data = models.JSONField(null=True, blank=True)
    issued_at = models.DateTimeField(null=True, blank=True)
    due = models.DateField(null=True, blank=True)
    cutoff = models.TimeField(null=True, blank=True)
    grace = models.DurationField(null=True, blank=True)
    ref = models.UUIDField(default=uuid.uuid4)
    blob = models.BinaryField(null=True, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "test_invoices"


class PaidInvoice(Invoice):
    class Meta:
        proxy = True


class InvoiceLine(TenantModel):
    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    text = models.CharField(max_length=100)
    qty = models.IntegerField(default=1)

    class Meta:
        db_table = "test_invoice_lines"


class Attachment(TenantModel):
    invoice = models.ForeignKey(
        Invoice, on_delete=models.SET_NULL, null=True, blank=True, related_name="attachments"
    )
    name = models.CharField(max_length=100)

    class Meta:
        db_table = "test_attachments"


class Label(models.Model):
    """A shared table (no tenant) with a UUID key and a unique name."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    name = models.CharField(max_length=50, unique=True)
    color = models.CharField(max_length=20, blank=True, default="")

    class Meta:
        db_table = "test_labels"

    def __str__(self) -> str:
        return self.name


class Event(TenantModel):
    """Audited without before-state (BETTER_AUDIT["SKIP_BEFORE_STATE"])."""

    kind = models.CharField(max_length=50)
    payload = models.JSONField(default=dict)

    class Meta:
        db_table = "test_events"


class Place(models.Model):
    name = models.CharField(max_length=50)

    class Meta:
        db_table = "test_places"

    def __str__(self) -> str:
        return self.name


class Shop(Place):
    """Multi-table inheritance: a save writes test_places and test_shops."""

    opens = models.TimeField(null=True, blank=True)

    class Meta:
        db_table = "test_shops"

    def __str__(self) -> str:
        return f"shop {self.name}"
