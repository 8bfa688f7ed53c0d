"""Signals of better_webhooks."""

from __future__ import annotations

from django.dispatch import Signal

#: Sent with ``endpoint`` (the WebhookEndpoint) and ``reason`` when delivery disables an endpoint.
endpoint_disabled = Signal()
#: Sent with ``delivery`` when a delivery has run out of attempts.
delivery_failed = Signal()
