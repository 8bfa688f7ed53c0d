"""Endpoints, messages, deliveries and delivery attempts of outgoing webhooks."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any, cast

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


class WebhookMessage(models.Model):
    """One ``send()``: the event and its payload, stored once however many endpoints receive it.

    ``id`` is the ``webhook-id`` header (``msg_...``), the same for every endpoint and every
    retry, so receivers can drop duplicates.
    """

    id = models.TextField(primary_key=True)
    event = models.TextField()
    payload = models.JSONField()
    tenant_id = models.UUIDField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "webhook_messages"
        verbose_name = "webhook message"
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["tenant_id", "created_at"], name="webhook_messages_tenant_idx"),
            models.Index(fields=["created_at"], name="webhook_messages_created_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.event} {self.id}"


def message_body(event: str, created_at: datetime, payload: Any) -> bytes:
    """The JSON body of a delivery: the same bytes on every attempt (the signature covers them)."""
    envelope = {
        "type": event,
        "timestamp": created_at.isoformat().replace("+00:00", "Z"),
        "data": payload,
    }
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode()


def _payload_lookup(key: str) -> str:
    """``payload`` / ``payload__...`` lookups of a delivery go to its message's payload."""
    if key == "payload" or key.startswith("payload__"):
        return "message__" + key
    return key


def _payload_q(q: Any) -> Any:
    if not isinstance(q, models.Q):
        return q
    children: list[Any] = []
    for child in q.children:
        if isinstance(child, models.Q):
            children.append(_payload_q(child))
        else:
            key, value = cast(tuple[str, Any], child)  # a (lookup, value) pair
            children.append((_payload_lookup(key), value))
    return models.Q(*children, _connector=q.connector, _negated=q.negated)


class DeliveryQuerySet(models.QuerySet["WebhookDelivery"]):
    """Deliveries; lookups on ``payload`` (``filter(payload__id=...)``) reach the payload where
    it is stored, on the delivery's message."""

    def _filter_or_exclude(self, negate: bool, args: Any, kwargs: Any) -> Any:
        # The one method filter(), exclude() and get() pass their lookups through.
        args = tuple(_payload_q(arg) for arg in args)
        kwargs = {_payload_lookup(key): value for key, value in kwargs.items()}
        return super()._filter_or_exclude(negate, args, kwargs)  # type: ignore[misc]


class DeliveryManager(models.Manager.from_queryset(DeliveryQuerySet)):  # type: ignore[misc]
    """Deliveries come with their message: ``payload`` reads no further row, in or out of the
    tenant scope they were loaded in."""

    def get_queryset(self) -> DeliveryQuerySet:
        return super().get_queryset().select_related("message")


class WebhookDelivery(models.Model):
    """One event for one endpoint, retried until delivered or out of attempts.

    ``message`` is the ``send()`` it delivers (its ``message_id``, ``msg_...``, is the
    ``webhook-id`` header); the payload is stored there, once per message. ``lease_until`` and
    ``locked_by`` are set while a worker holds the delivery; an expired lease makes it claimable
    again, so a worker that dies loses nothing. ``abandoned_claims`` counts the claims that took
    the delivery over from such a worker; at ``ABANDONED_LIMIT`` the claim fails it instead of
    handing it out again, so a payload that kills its worker does not kill every worker in turn.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # The column keeps its name: it held the message id before messages had a table.
    message = models.ForeignKey(
        WebhookMessage,
        on_delete=models.CASCADE,
        related_name="deliveries",
        db_column="message_id",
        db_index=False,  # webhook_deliveries_msg_idx
    )
    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    event = models.TextField()
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

    objects = DeliveryManager()

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
            models.Index(fields=["message"], name="webhook_deliveries_msg_idx"),
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

    def refresh_from_db(self, *args: Any, **kwargs: Any) -> None:
        # A message never changes: keep the loaded one, so the payload stays at hand as it did
        # when it was a column of the delivery (even outside the scope that can read it).
        message = self._state.fields_cache.get("message")
        super().refresh_from_db(*args, **kwargs)
        if message is not None and message.pk == self.message_id:
            self._state.fields_cache.setdefault("message", message)

    @property
    def payload(self) -> Any:
        """The message's payload (one query unless the message is loaded with the delivery)."""
        return self.message.payload

    def body(self) -> bytes:
        """The JSON body every attempt of this delivery sends."""
        return message_body(self.event, self.created_at, self.payload)


class WebhookDeliveryAttempt(models.Model):
    """One HTTP POST of a delivery: the request's headers and the response (or error) received.

    The body is the delivery's (``request_body``), stored once with its message; what differs
    from one attempt to the next is kept here: the signed headers, the status, the answer (at
    most ``MAX_RESPONSE_BODY`` bytes of it), the duration and the error.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    delivery = models.ForeignKey(
        WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log"
    )
    attempt = models.IntegerField()
    url = models.TextField()
    request_headers = models.JSONField(default=dict)
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
    def request_body(self) -> str:
        """The body this attempt sent: its delivery's."""
        return self.delivery.body().decode()

    @property
    def succeeded(self) -> bool:
        return self.response_status is not None and 200 <= self.response_status < 300
