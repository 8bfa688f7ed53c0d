"""Endpoint management: create with a one-time secret, rotate secrets, disable and enable."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.utils import timezone

from better_webhooks import crypto, db, ssrf
from better_webhooks.conf import seconds
from better_webhooks.events import is_known
from better_webhooks.exceptions import UnknownEventError
from better_webhooks.models import ALL_EVENTS, WebhookEndpoint


def validate_events(events: Iterable[str]) -> list[str]:
    """The subscribed event names, each in the catalog (or ``"*"``), without duplicates."""
    names = list(dict.fromkeys(events))
    if not names:
        raise UnknownEventError("An endpoint must subscribe to at least one event (or '*').")
    unknown = [name for name in names if name != ALL_EVENTS and not is_known(name)]
    if unknown:
        raise UnknownEventError(
            f"Unknown webhook event(s): {', '.join(unknown)}. Subscribe to events of the "
            "catalog (better_webhooks.events.list_events()) or to '*'."
        )
    return names


def create_endpoint(
    url: str,
    events: Iterable[str],
    *,
    description: str = "",
    metadata: dict[str, Any] | None = None,
    tenant: Any = None,
    secret: str | None = None,
) -> tuple[WebhookEndpoint, str]:
    """Create an endpoint and return it with its signing secret (shown to the user once).

    The URL is checked by the SSRF guard's static rules (scheme, literal addresses); the
    addresses its host resolves to are checked at every delivery. The tenant defaults to the one
    in scope; without better_tenant a ``tenant`` raises TenancyNotInstalledError.
    """
    ssrf.validate_url(url)
    names = validate_events(events)
    plain = secret or crypto.generate_secret()
    crypto.secret_bytes(plain)
    tenant_id = db.tenant_of(tenant)
    endpoint = WebhookEndpoint(
        url=url,
        events=names,
        description=description,
        metadata=metadata or {},
        tenant_id=tenant_id,
    )
    endpoint.secrets = [crypto.secret_entry(endpoint.id, plain)]
    with db.scope_for(tenant_id):
        endpoint.save(using=db.alias(), force_insert=True)
    return endpoint, plain


def rotate_secret(endpoint: WebhookEndpoint, overlap: timedelta | float | None = None) -> str:
    """Give the endpoint a new secret; the previous ones stay valid (and signed with) for overlap.

    ``overlap`` is a timedelta or seconds (default ``SECRET_ROTATION_OVERLAP``); zero drops the
    old secrets at once. Returns the new secret, shown to the user once.
    """
    if overlap is None:
        overlap = timedelta(seconds=seconds("SECRET_ROTATION_OVERLAP") or 0)
    elif not isinstance(overlap, timedelta):
        overlap = timedelta(seconds=float(overlap))
    new_secret = crypto.generate_secret()
    endpoint.secrets = crypto.rotated_secrets(endpoint, new_secret, overlap)
    with db.scope_for(endpoint.tenant_id):
        endpoint.save(using=db.alias(), update_fields=["secrets", "updated_at"])
    return new_secret


def disable_endpoint(endpoint: WebhookEndpoint, reason: str = "disabled by a user") -> None:
    """Stop delivering to the endpoint (pending deliveries end failed when claimed)."""
    endpoint.status = "disabled"
    endpoint.disabled_reason = reason
    endpoint.disabled_at = timezone.now()
    with db.scope_for(endpoint.tenant_id):
        endpoint.save(
            using=db.alias(),
            update_fields=["status", "disabled_reason", "disabled_at", "updated_at"],
        )


def enable_endpoint(endpoint: WebhookEndpoint) -> None:
    """Deliver to the endpoint again, with its failure counters reset."""
    endpoint.status = "active"
    endpoint.disabled_reason = ""
    endpoint.disabled_at = None
    endpoint.consecutive_failures = 0
    endpoint.failing_since = None
    fields = ["status", "disabled_reason", "disabled_at", "consecutive_failures"]
    with db.scope_for(endpoint.tenant_id):
        endpoint.save(using=db.alias(), update_fields=[*fields, "failing_since", "updated_at"])
