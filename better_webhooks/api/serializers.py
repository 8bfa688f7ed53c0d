"""Serializers of the webhooks API; JSON keys are camelCase, as in the product's wire format."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from better_webhooks.api.schema import status_ref
from better_webhooks.models import (
    DELIVERY_STATUSES,
    WebhookDelivery,
    WebhookDeliveryAttempt,
    WebhookEndpoint,
)

MAX_EVENTS = 100
MAX_URL = 2048


def validate_event_names(names: list[str]) -> list[str]:
    """Subscribed names must be in the catalog (or ``*`` for every event); duplicates dropped."""
    from better_webhooks.endpoints import validate_events
    from better_webhooks.exceptions import UnknownEventError

    try:
        return validate_events(names)
    except UnknownEventError as exc:
        raise serializers.ValidationError(str(exc)) from exc


@extend_schema_field(status_ref("WebhookEndpointStatus"))
class EndpointStatusField(serializers.CharField):
    """``active`` or ``disabled``."""


@extend_schema_field(status_ref("WebhookDeliveryStatus"))
class DeliveryStatusField(serializers.CharField):
    """``pending``, ``delivering``, ``delivered`` or ``failed``."""


class EndpointSerializer(serializers.ModelSerializer):
    """An endpoint as the API shows it: never its secrets."""

    status = EndpointStatusField(read_only=True)

    disabledReason = serializers.CharField(source="disabled_reason", read_only=True)
    disabledAt = serializers.DateTimeField(source="disabled_at", read_only=True, allow_null=True)
    consecutiveFailures = serializers.IntegerField(source="consecutive_failures", read_only=True)
    failingSince = serializers.DateTimeField(
        source="failing_since", read_only=True, allow_null=True
    )
    # Null for an endpoint created outside any tenant scope (always, without better_tenant).
    tenantId = serializers.UUIDField(source="tenant_id", read_only=True, allow_null=True)
    createdAt = serializers.DateTimeField(source="created_at", read_only=True)
    updatedAt = serializers.DateTimeField(source="updated_at", read_only=True)

    class Meta:
        model = WebhookEndpoint
        fields = [
            "id",
            "url",
            "events",
            "description",
            "metadata",
            "status",
            "disabledReason",
            "disabledAt",
            "consecutiveFailures",
            "failingSince",
            "tenantId",
            "createdAt",
            "updatedAt",
        ]
        read_only_fields = fields


class EndpointWithSecretSerializer(EndpointSerializer):
    """The create response: the endpoint and its signing secret, shown this once."""

    secret = serializers.SerializerMethodField()

    class Meta(EndpointSerializer.Meta):
        fields = [*EndpointSerializer.Meta.fields, "secret"]
        read_only_fields = fields

    def get_secret(self, obj: WebhookEndpoint) -> str:
        return self.context["secret"]


class EndpointWriteSerializer(serializers.Serializer):
    """Input of create (``url`` and ``events`` required) and update (every field optional)."""

    url = serializers.CharField(max_length=MAX_URL, trim_whitespace=True)
    events = serializers.ListField(
        child=serializers.CharField(max_length=200), min_length=1, max_length=MAX_EVENTS
    )
    description = serializers.CharField(
        max_length=1000, required=False, allow_blank=True, default=""
    )
    metadata = serializers.DictField(required=False, default=dict)

    def validate_events(self, value: list[str]) -> list[str]:
        return validate_event_names(value)

    def validate_url(self, value: str) -> str:
        from better_webhooks.exceptions import UnsafeURLError
        from better_webhooks.ssrf import validate_url

        try:
            validate_url(value)
        except UnsafeURLError as exc:
            raise serializers.ValidationError(str(exc), code="INVALID_URL") from exc
        return value


class RotateSecretSerializer(serializers.Serializer):
    """How long the previous secret keeps being accepted (``"24h"``, seconds; default setting)."""

    overlap = serializers.CharField(required=False, allow_null=True, default=None)

    def validate_overlap(self, value: Any) -> float | None:
        from better_core.durations import UNITS_HELP, parse_duration

        if value is None:
            return None
        text = str(value).strip()
        if text.isdigit():
            return float(text)
        try:
            return float(parse_duration(text).seconds)
        except (ValueError, TypeError) as exc:
            raise serializers.ValidationError(
                f"{value!r} is not a duration: give seconds or a number with a unit ({UNITS_HELP})."
            ) from exc


class RotatedSecretSerializer(serializers.Serializer):
    endpointId = serializers.UUIDField()
    secret = serializers.CharField()
    previousSecretExpiresAt = serializers.DateTimeField(allow_null=True)


class TestEventSerializer(serializers.Serializer):
    """Optional payload of the test event (a small default one otherwise)."""

    payload = serializers.DictField(required=False)


class DeliveryFilterSerializer(serializers.Serializer):
    """Query parameters of the delivery log."""

    endpointId = serializers.UUIDField(required=False)
    event = serializers.CharField(required=False, max_length=200)
    status = serializers.ChoiceField(choices=DELIVERY_STATUSES, required=False)


class AttemptSerializer(serializers.ModelSerializer):
    requestHeaders = serializers.JSONField(source="request_headers")
    # The delivery's body, the same bytes on every attempt (stored once, with the message).
    requestBody = serializers.CharField(source="request_body", read_only=True)
    responseStatus = serializers.IntegerField(source="response_status", allow_null=True)
    responseHeaders = serializers.JSONField(source="response_headers")
    responseBody = serializers.CharField(source="response_body")
    durationMs = serializers.IntegerField(source="duration_ms")
    createdAt = serializers.DateTimeField(source="created_at")

    class Meta:
        model = WebhookDeliveryAttempt
        fields = [
            "id",
            "attempt",
            "url",
            "requestHeaders",
            "requestBody",
            "responseStatus",
            "responseHeaders",
            "responseBody",
            "durationMs",
            "error",
            "createdAt",
        ]
        read_only_fields = fields


class DeliverySerializer(serializers.ModelSerializer):
    """A row of the delivery log."""

    messageId = serializers.CharField(source="message_id", read_only=True)
    endpointId = serializers.UUIDField(source="endpoint_id", read_only=True)
    eventName = serializers.CharField(source="event", read_only=True)
    status = DeliveryStatusField(read_only=True)
    maxAttempts = serializers.IntegerField(source="max_attempts", read_only=True)
    nextAttemptAt = serializers.DateTimeField(source="next_attempt_at", read_only=True)
    lastError = serializers.CharField(source="last_error", read_only=True)
    lastStatusCode = serializers.IntegerField(
        source="last_status_code", read_only=True, allow_null=True
    )
    tenantId = serializers.UUIDField(source="tenant_id", read_only=True, allow_null=True)
    createdAt = serializers.DateTimeField(source="created_at", read_only=True)
    updatedAt = serializers.DateTimeField(source="updated_at", read_only=True)
    deliveredAt = serializers.DateTimeField(source="delivered_at", read_only=True, allow_null=True)

    class Meta:
        model = WebhookDelivery
        fields = [
            "id",
            "messageId",
            "endpointId",
            "eventName",
            "status",
            "attempts",
            "maxAttempts",
            "nextAttemptAt",
            "lastError",
            "lastStatusCode",
            "tenantId",
            "createdAt",
            "updatedAt",
            "deliveredAt",
        ]
        read_only_fields = fields


class DeliveryDetailSerializer(DeliverySerializer):
    """A delivery with its payload and every attempt, oldest first."""

    # Stored once per message; read through the delivery's message.
    payload = serializers.JSONField(read_only=True)
    attemptLog = AttemptSerializer(source="attempt_log", many=True, read_only=True)

    class Meta(DeliverySerializer.Meta):
        fields = [*DeliverySerializer.Meta.fields, "payload", "attemptLog"]
        read_only_fields = fields


class RecoverSerializer(serializers.Serializer):
    """Failed deliveries created at or after ``since`` go back to the queue."""

    since = serializers.DateTimeField()
    endpointId = serializers.UUIDField(required=False)
    event = serializers.CharField(required=False, max_length=200)


class RecoveredSerializer(serializers.Serializer):
    recovered = serializers.IntegerField()


class EventSerializer(serializers.Serializer):
    """An event of the catalog: its name, description and payload JSON Schema."""

    name = serializers.CharField()
    description = serializers.CharField()
    schema = serializers.JSONField()


# The metaclass moves declared fields into _declared_fields, so a field named ``data`` leaves the
# ``data`` property in place; the stubs see the class attribute only.
class EndpointPageSerializer(serializers.Serializer):
    """A page of endpoints, newest first; ``next``/``previous`` as in the delivery log."""

    data = EndpointSerializer(many=True)  # type: ignore[assignment]
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)


class EventListSerializer(serializers.Serializer):
    data = EventSerializer(many=True)  # type: ignore[assignment]


class DeliveryPageSerializer(serializers.Serializer):
    """A page of the delivery log; ``next``/``previous`` are URLs with the cursor (or null)."""

    data = DeliverySerializer(many=True)  # type: ignore[assignment]  # a field, as above
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)


class WebhookErrorSerializer(serializers.Serializer):
    """Every error of the API: what is wrong and what to do, a stable code, and for invalid
    input the errors by field (or by payload path)."""

    error = serializers.CharField()
    code = serializers.CharField()
    details = serializers.DictField(required=False)
