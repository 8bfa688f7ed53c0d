"""``send()``: validate an event and write its deliveries in the caller's transaction."""

from __future__ import annotations

import json
import logging
import secrets
import uuid
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connections, transaction
from django.utils import timezone
from psycopg.types.json import Jsonb

from better_webhooks import db
from better_webhooks.conf import seconds, webhook_settings
from better_webhooks.events import get_event
from better_webhooks.exceptions import PayloadTooLargeError, PayloadValidationError
from better_webhooks.models import ALL_EVENTS, WebhookDelivery, WebhookMessage

logger = logging.getLogger(__name__)

# One statement picks the subscribed endpoints, stores the message once (only when some
# endpoint receives it) and writes a delivery per endpoint.
_INSERT_SQL = """
WITH targets AS MATERIALIZED (
       SELECT e.id, e.created_at
         FROM webhook_endpoints AS e
        WHERE e.status = 'active' AND e.tenant_id IS NOT DISTINCT FROM %(tenant)s::uuid
          AND e.events && %(targets)s::text[]),
message AS (
       INSERT INTO webhook_messages (id, event, payload, tenant_id, created_at)
       SELECT %(message)s, %(event)s, %(payload)s, %(tenant)s::uuid, %(now)s
        WHERE EXISTS (SELECT FROM targets)
       RETURNING id)
INSERT INTO webhook_deliveries
       (id, message_id, endpoint_id, event, status, attempts, max_attempts, next_attempt_at,
        idempotency_key, last_error, tenant_id, created_at, updated_at)
SELECT gen_random_uuid(), m.id, t.id, %(event)s, 'pending', 0, %(max_attempts)s, %(now)s,
       %(key)s, '', %(tenant)s::uuid, %(now)s, %(now)s
  FROM targets AS t CROSS JOIN message AS m
 ORDER BY t.created_at
RETURNING id, endpoint_id
"""
# With explicit endpoints: those of them that are active, whatever they subscribe to.
_INSERT_TO_SQL = _INSERT_SQL.replace(
    "e.events && %(targets)s::text[]", "e.id = ANY(%(targets)s::uuid[])"
)


def new_message_id() -> str:
    """A ``webhook-id``: ``msg_`` and 24 random URL-safe characters."""
    return "msg_" + secrets.token_urlsafe(18)


def _endpoint_id(value: Any) -> str:
    raw = getattr(value, "pk", value)
    try:
        return str(uuid.UUID(str(raw)))
    except ValueError:
        raise ValueError(
            f"endpoints: {raw!r} is not an endpoint or an endpoint id (a UUID)."
        ) from None


def _json_payload(event: str, payload: Any) -> Any:
    """The payload as JSON values, refused when its JSON is over ``MAX_PAYLOAD_BYTES``."""
    try:
        text = json.dumps(payload, cls=DjangoJSONEncoder, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise PayloadValidationError(
            event, {"(root)": f"is not JSON-serializable ({exc})"}
        ) from exc
    limit = webhook_settings.MAX_PAYLOAD_BYTES
    if limit is not None:
        size = len(text.encode())
        if size > limit:
            raise PayloadTooLargeError(event, size, int(limit))
    return json.loads(text)


def send(
    event: str,
    payload: Any,
    *,
    endpoints: Iterable[Any] | None = None,
    idempotency_key: str | None = None,
    tenant: Any = None,
) -> list[WebhookDelivery]:
    """Queue ``event`` for every active endpoint subscribed to it; return the deliveries.

    ``endpoints`` (instances or ids) narrows the recipients to those endpoints, whatever they
    subscribe to: the active ones of the event's tenant receive it, the others are skipped.

    The payload is checked first: its JSON must fit ``MAX_PAYLOAD_BYTES`` (PayloadTooLargeError)
    and match the event's schema (UnknownEventError, PayloadValidationError); it is stored once,
    with the message, however many endpoints receive it. The rows are written in the caller's
    transaction and dispatched only after it commits, so a rollback sends nothing. ``tenant``
    defaults to the tenant in scope; without one, the endpoints without a tenant receive the
    event (without better_tenant a ``tenant`` raises TenancyNotInstalledError: there is no
    tenant to name). A repeated ``idempotency_key`` (per tenant, within ``IDEMPOTENCY_WINDOW``)
    returns the first call's deliveries and queues nothing.
    """
    event_type = get_event(event)
    data = _json_payload(event, payload)
    event_type.validate(payload)
    tenant_id = db.tenant_of(tenant)
    targets = None if endpoints is None else [_endpoint_id(e) for e in endpoints]
    using = db.alias()
    now = timezone.now()
    with db.scope_for(tenant_id), connections[using].cursor() as cursor:
        if idempotency_key is not None:
            # Serialise concurrent sends of one key until their transactions end.
            cursor.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                [f"better_webhooks:{tenant_id}:{idempotency_key}"],
            )
            window = seconds("IDEMPOTENCY_WINDOW") or 0
            earlier = list(
                WebhookDelivery.objects.using(using)
                .select_related("message")
                .filter(
                    # tenant_id=None is IS NULL in Django.
                    tenant_id=tenant_id,
                    idempotency_key=idempotency_key,
                    created_at__gte=now - timedelta(seconds=window),
                )
                .order_by("created_at", "id")
            )
            if earlier:
                return earlier
        message = WebhookMessage(
            id=new_message_id(), event=event, payload=data, tenant_id=tenant_id, created_at=now
        )
        message._state.adding, message._state.db = False, using
        max_attempts = webhook_settings.MAX_ATTEMPTS
        # psycopg adapts Jsonb, which the stubs' parameter types leave out: typed loosely.
        params: dict[str, Any] = {
            "message": message.id,
            "event": event,
            "payload": Jsonb(data),
            "max_attempts": max_attempts,
            "now": now,
            "key": idempotency_key,
            "tenant": tenant_id,
            "targets": [event, ALL_EVENTS] if targets is None else targets,
        }
        cursor.execute(_INSERT_SQL if targets is None else _INSERT_TO_SQL, params)
        deliveries = [
            WebhookDelivery(
                id=delivery_id,
                message=message,
                endpoint_id=endpoint_id,
                event=event,
                max_attempts=max_attempts,
                next_attempt_at=now,
                idempotency_key=idempotency_key,
                tenant_id=tenant_id,
                created_at=now,
                updated_at=now,
            )
            for delivery_id, endpoint_id in cursor.fetchall()
        ]
    for delivery in deliveries:
        delivery._state.adding = False
        delivery._state.db = using
    if deliveries:
        ids = [delivery.id for delivery in deliveries]
        transaction.on_commit(lambda: dispatch(ids), using=using)
    return deliveries


def celery_enabled() -> bool:
    """Whether deliveries go out through Celery tasks (else the polling worker sends them)."""
    configured = webhook_settings.raw("CELERY")
    if configured is not None:
        return bool(configured)
    if not getattr(settings, "CELERY_BROKER_URL", None):
        return False
    try:
        import celery  # noqa: F401
    except ImportError:
        return False
    return True


def dispatch(ids: list[Any], *, countdown: float | None = None) -> None:
    """After commit: one Celery task per ``WORKER_BATCH_SIZE`` deliveries, or nothing (the polling
    worker claims them). ``countdown`` delays the tasks (retries).

    A publish failure is logged, not raised: the deliveries are committed and the polling worker
    (or the ``deliver_due`` sweep, or a later replay) still sends them.
    """
    if not celery_enabled() or not ids:
        return
    from better_webhooks.tasks import deliver

    options: dict[str, Any] = {}
    if webhook_settings.CELERY_QUEUE:
        options["queue"] = webhook_settings.CELERY_QUEUE
    if countdown is not None:
        options["countdown"] = countdown
    size = max(1, int(webhook_settings.WORKER_BATCH_SIZE))
    for start in range(0, len(ids), size):
        chunk = [str(delivery_id) for delivery_id in ids[start : start + size]]
        try:
            deliver.apply_async((chunk,), **options)
        except Exception:
            logger.exception(
                "Publishing %d webhook deliveries to Celery failed (first %s).",
                len(chunk),
                chunk[0],
            )
