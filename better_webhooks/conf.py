"""Settings of better_webhooks, read from ``settings.BETTER_WEBHOOKS``."""

from __future__ import annotations

from better_core.durations import parse_duration
from better_core.settings import AppSettings

DEFAULTS = {
    # AES-GCM keys that encrypt endpoint secrets at rest, newest first, each "v<N>:<64 hex>".
    "ENCRYPTION_KEYS": [],
    # The event catalog: dicts {"name", "description", "schema"}; schema is a JSON Schema dict,
    # a DRF Serializer class or a dotted path to one.
    "EVENTS": [],
    # Attempts per delivery, and the waits before each retry (the last one repeats).
    "MAX_ATTEMPTS": 5,
    "RETRY_SCHEDULE": ["5s", "5min", "30min", "2h", "5h", "10h"],
    # Each wait is spread by up to this fraction either way, so retries do not arrive in bursts.
    "RETRY_JITTER": 0.2,
    # A Retry-After header (429/503) is honoured between these bounds (seconds).
    "RETRY_AFTER_MIN": 1,
    "RETRY_AFTER_MAX": 3600,
    # A repeated idempotency key within this window returns the first call's deliveries.
    "IDEMPOTENCY_WINDOW": "24h",
    # How long the previous secret stays valid (and signed with) after rotate_secret().
    "SECRET_ROTATION_OVERLAP": "24h",
    # An endpoint is disabled after this many deliveries in a row ended failed, or after it has
    # failed without a success for DISABLE_AFTER (None turns either rule off).
    "DISABLE_AFTER_FAILED_DELIVERIES": 10,
    "DISABLE_AFTER": "5d",
    # HTTP client: timeouts (seconds), response bytes kept, redirects are never followed. One
    # attempt lasts at most CONNECT_TIMEOUT + TIMEOUT in all: a receiver that drips its answer
    # is cut off there.
    "CONNECT_TIMEOUT": 5.0,
    "TIMEOUT": 15.0,
    "MAX_RESPONSE_BODY": 65536,
    "USER_AGENT": "better-webhooks/1.0",
    # CA bundle (path) that verifies receivers' certificates; None uses the system's.
    "CA_BUNDLE": None,
    # SSRF guard: plain http to loopback is allowed only with this (development and tests);
    # ALLOWED_CIDRS lets deployments deliver to internal networks they list.
    "ALLOW_HTTP_LOCALHOST": False,
    "ALLOWED_CIDRS": [],
    # Dispatch after commit through Celery tasks (one per send() commit, carrying up to
    # WORKER_BATCH_SIZE deliveries; the task sends them with WORKER_CONCURRENCY threads): None
    # decides from the presence of a broker (CELERY_BROKER_URL); False leaves every delivery to
    # the polling worker.
    "CELERY": None,
    "CELERY_QUEUE": None,
    # Polling worker (manage.py better_webhooks worker); batch size and threads serve Celery too.
    "WORKER_INTERVAL": 1.0,
    "WORKER_BATCH_SIZE": 100,
    "WORKER_CONCURRENCY": 8,
    # How long a claim holds its deliveries (and how long a dead worker's deliveries wait). An
    # attempt starts only while the lease has CONNECT_TIMEOUT + TIMEOUT + 2 s left; the rest of
    # a batch is released unsent for the next claim. ceil(WORKER_BATCH_SIZE /
    # WORKER_CONCURRENCY) * (CONNECT_TIMEOUT + TIMEOUT) + 2 s fits a whole batch of slow
    # receivers; less than one attempt's share sends nothing (check better_webhooks.W003).
    "LEASE_SECONDS": 120,
    # A delivery whose lease expired this many times while it was being sent (its worker died
    # each time: killed, out of memory, crashed) is failed by the next claim instead of being
    # handed to another worker; replay queues it again once the cause is fixed.
    "ABANDONED_LIMIT": 3,
    # Share of each claimed batch reserved for retries, so that a backlog of retries never
    # starves fresh deliveries (and fresh traffic never starves retries).
    "RETRY_SHARE": 0.5,
    # Permission classes of the HTTP API (better_webhooks.api; None: its default, staff only).
    "API_PERMISSION_CLASSES": None,
    # Database alias of the webhook tables.
    "DATABASE": "default",
    # Receiver side (verify.py): accepted clock skew (seconds) and duplicate-id memory.
    "TIMESTAMP_TOLERANCE": 300,
    "RECEIVER_CACHE": "default",
    "RECEIVER_DEDUP_TTL": 86400,
}

webhook_settings = AppSettings("BETTER_WEBHOOKS", DEFAULTS)


def to_seconds(value: str | float) -> float:
    """A duration (``"24h"`` or a number of seconds) in seconds."""
    if isinstance(value, int | float):
        return float(value)
    return float(parse_duration(value).seconds)


def seconds(key: str) -> float | None:
    """A duration setting in seconds; None when unset."""
    value = webhook_settings.raw(key)
    return None if value is None else to_seconds(value)
