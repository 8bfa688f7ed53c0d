"""Endpoints, deliveries and delivery attempts of outgoing webhooks."""

from __future__ import annotations

import uuid

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils import timezone

ENDPOINT_STATUSES = ("active", "disabled")
DELIVERY_STATUSES = ("pending", "delivering", "delivered", "failed")
#: An endpoint subscribed to this event name receives every event.
ALL_EVENTS = "*"


class WebhookEndpoint(models.Model):
    """A URL that receives the events it subscribes to (``events``; ``["*"]`` for all).

    ``secrets`` holds the signing secrets encrypted at rest, newest first: each item is
    ``{"id", "key_id", "ciphertext", "created_at", "expires_at"}`` (``expires_at`` is None for the
    current secret and set on the previous ones while a rotation overlap lasts). Read them with
    ``better_webhooks.crypto.endpoint_secrets(endpoint)``. ``tenant_id`` is the owning tenant
    (None: an endpoint of the platform itself, which receives only events sent without a tenant).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    url = models.TextField()
    events = ArrayField(models.TextField(), default=list)
    description = models.TextField(blank=True, default="")
    status = models.CharField(
        max_length=8, default="active", choices=[(s, s) for s in ENDPOINT_STATUSES]
    )
    disabled_reason = models.TextField(blank=True, default="")
    disabled_at = models.DateTimeField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    secrets = models.JSONField(default=list, blank=True, editable=False)
    # Deliveries that ended failed in a row, and since when; reset by a successful delivery.
    consecutive_failures = models.IntegerField(default=0)
    failing_since = models.DateTimeField(null=True, blank=True)
    tenant_id = models.UUIDField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "webhook_endpoints"
        verbose_name = "webhook endpoint"
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["tenant_id", "status"], name="webhook_endpoints_tenant_idx"),
            models.Index(fields=["created_at"], name="webhook_endpoints_created_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=ENDPOINT_STATUSES),
                name="webhook_endpoints_status_check",
            ),
        ]

    def __str__(self) -> str:
        return self.url

    @property
    def is_active(self) -> bool:
        return self.status == "active"


class WebhookDelivery(models.Model):
    """One event for one endpoint, retried until delivered or out of attempts.

    ``message_id`` (``msg_...``) is the ``webhook-id`` header: one per ``send()`` call, the same
    for every endpoint and every retry, so receivers can drop duplicates. ``lease_until`` and
    ``locked_by`` are set while a worker holds the delivery; an expired lease makes it claimable
    again, so a worker that dies loses nothing. ``abandoned_claims`` counts the claims that took
    the delivery over from such a worker; at ``ABANDONED_LIMIT`` the claim fails it instead of
    handing it out again, so a payload that kills its worker does not kill every worker in turn.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    message_id = models.TextField()
    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    event = models.TextField()
    payload = models.JSONField()
    status = models.CharField(
        max_length=10, default="pending", choices=[(s, s) for s in DELIVERY_STATUSES]
    )
    attempts = models.IntegerField(default=0)
    max_attempts = models.IntegerField(default=5)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    lease_until = models.DateTimeField(null=True, blank=True)
    locked_by = models.TextField(null=True, blank=True)
    # A database default too: deliveries are inserted by raw SQL that does not name the column.
    abandoned_claims = models.IntegerField(default=0, db_default=0)
    idempotency_key = models.TextField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    last_status_code = models.IntegerField(null=True, blank=True)
    tenant_id = models.UUIDField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "webhook_deliveries"
        verbose_name = "webhook delivery"
        verbose_name_plural = "webhook deliveries"
        ordering = ["-created_at"]
        indexes = [
            # The worker's claim query: due pending deliveries, and expired leases.
            models.Index(
                fields=["next_attempt_at"],
                name="webhook_deliveries_due_idx",
                condition=models.Q(status="pending"),
            ),
            models.Index(
                fields=["lease_until"],
                name="webhook_deliveries_lease_idx",
                condition=models.Q(status="delivering"),
            ),
            models.Index(
                fields=["status", "next_attempt_at"], name="webhook_deliveries_status_idx"
            ),
            models.Index(fields=["endpoint", "created_at"], name="webhook_deliveries_endpt_idx"),
            models.Index(fields=["event", "created_at"], name="webhook_deliveries_event_idx"),
            models.Index(fields=["tenant_id", "created_at"], name="webhook_deliveries_tenant_idx"),
            models.Index(fields=["message_id"], name="webhook_deliveries_msg_idx"),
            models.Index(
                fields=["idempotency_key", "created_at"],
                name="webhook_deliveries_idem_idx",
                condition=models.Q(idempotency_key__isnull=False),
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=DELIVERY_STATUSES),
                name="webhook_deliveries_status_check",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event} -> {self.endpoint_id} ({self.status})"


class WebhookDeliveryAttempt(models.Model):
    """One HTTP POST of a delivery: the request sent and the response (or error) received."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    delivery = models.ForeignKey(
        WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log"
    )
    attempt = models.IntegerField()
    url = models.TextField()
    request_headers = models.JSONField(default=dict)
    request_body = models.TextField()
    response_status = models.IntegerField(null=True, blank=True)
    response_headers = models.JSONField(default=dict, blank=True)
    response_body = models.TextField(blank=True, default="")
    duration_ms = models.IntegerField(default=0)
    error = models.TextField(blank=True, default="")
    tenant_id = models.UUIDField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "webhook_delivery_attempts"
        verbose_name = "webhook delivery attempt"
        ordering = ["delivery", "attempt"]
        indexes = [
            models.Index(fields=["delivery", "attempt"], name="webhook_attempts_delivery_idx"),
            models.Index(fields=["created_at"], name="webhook_attempts_created_idx"),
        ]

    def __str__(self) -> str:
        return f"attempt {self.attempt} of {self.delivery_id}"

    @property
    def succeeded(self) -> bool:
        return self.response_status is not None and 200 <= self.response_status < 300
