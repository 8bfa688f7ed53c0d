"""Settings of better_webhooks, read from ``settings.BETTER_WEBHOOKS``."""

from __future__ import annotations

import ipaddress
from typing import Any

from better_core.settings import (
    AppSettings,
    Bool,
    Choice,
    Duration,
    Import,
    Int,
    Invalid,
    Number,
    Setting,
    Str,
    to_seconds,
)


def _encryption_keys(value: Any) -> Any:
    from better_webhooks.crypto import parse_key
    from better_webhooks.exceptions import ConfigurationError

    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list | tuple):
        raise Invalid(f"must be a list of 'v<N>:<64 hex>' keys, got {type(value).__name__}.")
    try:
        ids = [parse_key(item)[0] for item in values]
    except ConfigurationError as exc:
        raise Invalid(f"has a key it cannot use: {exc}") from None
    if len(set(ids)) != len(ids):
        raise Invalid("names a key version twice; give each key its own version (v1, v2, ...).")
    return value


def _events(value: Any) -> Any:
    if not isinstance(value, list | tuple) or not all(
        isinstance(item, dict) and "name" in item for item in value
    ):
        raise Invalid(
            "must be a list of dicts, each with a 'name' (and optionally 'description' and "
            "'schema')."
        )
    return value


def _retry_schedule(value: Any) -> list[float]:
    if not isinstance(value, list | tuple):
        raise Invalid(f"is not a list of durations: got {type(value).__name__}.")
    if not value:
        raise Invalid("is not a list of durations: it is empty.")
    try:
        return [to_seconds(item) for item in value]
    except ValueError as exc:
        raise Invalid(f"is not a list of durations: {exc}") from None


def _networks(value: Any) -> Any:
    if not isinstance(value, list | tuple):
        raise Invalid(f"must be a list of networks, got {type(value).__name__}.")
    for item in value:
        try:
            ipaddress.ip_network(item, strict=False)
        except (TypeError, ValueError):
            raise Invalid(f"has {item!r}, which is not a network such as '10.1.0.0/16'.") from None
    return value


SCHEMA = {
    "ENCRYPTION_KEYS": Setting(
        [],
        parse=_encryption_keys,
        id="better_webhooks.E002",
        hint="AES-GCM keys encrypting endpoint secrets at rest, newest first; run "
        "`manage.py better_webhooks generate-key`.",
    ),
    "EVENTS": Setting(
        [],
        parse=_events,
        id="better_webhooks.E006",
        hint="The event catalog: [{'name': 'invoice.paid', 'description': ..., 'schema': a JSON "
        "Schema dict, a DRF Serializer or its dotted path}].",
    ),
    "MAX_ATTEMPTS": Int(
        5, min=1, id="better_webhooks.E005", hint="Attempts per delivery; the default is 5."
    ),
    "RETRY_SCHEDULE": Setting(
        ["5s", "5min", "30min", "2h", "5h", "10h"],
        parse=_retry_schedule,
        id="better_webhooks.E004",
        hint='The waits before each retry, the last one repeating: for example ["5s", "5min", '
        '"30min", "2h", "5h", "10h"].',
    ),
    "RETRY_JITTER": Number(
        0.2,
        min=0,
        max=1,
        id="better_webhooks.E008",
        hint="The fraction each wait is spread by either way, from 0 to 1 (default 0.2).",
    ),
    "RETRY_AFTER_MIN": Number(
        1,
        min=0,
        id="better_webhooks.E008",
        hint="Seconds: the shortest Retry-After (429/503) honoured.",
    ),
    "RETRY_AFTER_MAX": Number(
        3600,
        min=0,
        id="better_webhooks.E008",
        hint="Seconds: the longest Retry-After (429/503) honoured.",
    ),
    "IDEMPOTENCY_WINDOW": Duration(
        "24h",
        nullable=True,
        id="better_webhooks.E003",
        hint="How long a repeated idempotency key returns the first call's deliveries, e.g. '24h'.",
    ),
    "SECRET_ROTATION_OVERLAP": Duration(
        "24h",
        nullable=True,
        id="better_webhooks.E003",
        hint="How long the previous secret stays valid after rotate_secret(), e.g. '24h'.",
    ),
    "DISABLE_AFTER_FAILED_DELIVERIES": Int(
        10,
        min=1,
        nullable=True,
        id="better_webhooks.E008",
        hint="Failed deliveries in a row that disable an endpoint; None turns the rule off.",
    ),
    "DISABLE_AFTER": Duration(
        "5d",
        nullable=True,
        id="better_webhooks.E003",
        hint="How long an endpoint may fail without a success before it is disabled, e.g. "
        "'5d'; None turns the rule off.",
    ),
    "CONNECT_TIMEOUT": Number(
        5.0, min=0, id="better_webhooks.E008", hint="Seconds to connect (default 5)."
    ),
    "TIMEOUT": Number(
        15.0,
        min=0,
        id="better_webhooks.E008",
        hint="Seconds an attempt may take after connecting, the whole answer included "
        "(default 15).",
    ),
    "MAX_PAYLOAD_BYTES": Int(
        350 * 1024,
        min=1,
        nullable=True,
        id="better_webhooks.E008",
        hint="The largest payload send() accepts, in bytes of its JSON (default 358400, the "
        "~350 kB Svix documents); None accepts any size.",
    ),
    "MAX_RESPONSE_BODY": Int(
        65536,
        min=0,
        id="better_webhooks.E008",
        hint="Bytes of a receiver's answer kept (default 65536).",
    ),
    "USER_AGENT": Str(
        "better-webhooks/1.0",
        id="better_webhooks.E008",
        hint="The User-Agent header of the deliveries.",
    ),
    "CA_BUNDLE": Str(
        None,
        nullable=True,
        id="better_webhooks.E008",
        hint="Path of a CA bundle verifying receivers' certificates; None uses the system's.",
    ),
    "ALLOW_HTTP_LOCALHOST": Bool(
        False,
        id="better_webhooks.E008",
        hint="True allows plain http to loopback receivers: development and tests only.",
    ),
    "ALLOWED_CIDRS": Setting(
        [],
        parse=_networks,
        id="better_webhooks.E006",
        hint="Internal networks deliveries may reach, e.g. ['10.1.0.0/16'].",
    ),
    "CELERY": Choice(
        None,
        choices=(None, True, False),
        id="better_webhooks.E008",
        hint="True dispatches through Celery tasks, False leaves every delivery to the polling "
        "worker, None decides from CELERY_BROKER_URL.",
    ),
    "CELERY_QUEUE": Str(
        None,
        nullable=True,
        id="better_webhooks.E008",
        hint="The Celery queue of the tasks; None: the default.",
    ),
    "WORKER_INTERVAL": Number(
        1.0,
        min=0,
        id="better_webhooks.E008",
        hint="Seconds the polling worker waits when idle (default 1).",
    ),
    "WORKER_BATCH_SIZE": Int(
        100,
        min=1,
        id="better_webhooks.E008",
        hint="Deliveries per claim and per Celery task (default 100).",
    ),
    "WORKER_CONCURRENCY": Int(
        8, min=1, id="better_webhooks.E008", hint="Threads sending one batch (default 8)."
    ),
    "LEASE_SECONDS": Number(
        120,
        min=0,
        id="better_webhooks.E008",
        hint="How long a claim holds its deliveries (default 120); see better_webhooks.W003.",
    ),
    "ABANDONED_LIMIT": Int(
        3,
        min=1,
        id="better_webhooks.E007",
        hint="The number of times a delivery's worker may stop while sending it before the "
        "delivery is failed; the default is 3.",
    ),
    "RETRY_SHARE": Number(
        0.5,
        min=0,
        max=1,
        id="better_webhooks.E008",
        hint="The share of each claimed batch reserved for retries, from 0 to 1 (default 0.5).",
    ),
    "API_PERMISSION_CLASSES": Import(
        None,
        many=True,
        single=False,
        id="better_webhooks.E008",
        hint="Dotted paths of the DRF permission classes of the HTTP API; None: staff only.",
    ),
    "DATABASE": Str(
        "default", id="better_webhooks.E008", hint="The database alias of the webhook tables."
    ),
    "PORTAL_AUTHORIZE": Import(
        None,
        id="better_webhooks.E008",
        hint="The portal: a callable(request, tenant_id) -> bool or its dotted path, asked for "
        "the tenant in scope on every request; None: only signed links open the portal.",
    ),
    "PORTAL_LINK_MAX_AGE": Duration(
        "1h",
        min=1,
        id="better_webhooks.E003",
        hint="The portal: the longest a signed link stays usable, e.g. '1h' (the default).",
    ),
    "PORTAL_SESSION_MAX_AGE": Duration(
        "8h",
        min=1,
        id="better_webhooks.E003",
        hint="The portal: how long an opened link grants the browser session its tenant's "
        "portal, e.g. '8h' (the default).",
    ),
    "TIMESTAMP_TOLERANCE": Number(
        300,
        min=0,
        id="better_webhooks.E008",
        hint="Receivers: seconds of accepted clock skew (default 300).",
    ),
    "RECEIVER_CACHE": Str(
        "default",
        id="better_webhooks.E008",
        hint="Receivers: the cache alias remembering message ids.",
    ),
    "RECEIVER_DEDUP_TTL": Number(
        86400,
        min=0,
        id="better_webhooks.E008",
        hint="Receivers: seconds a message id is remembered.",
    ),
}

webhook_settings = AppSettings("BETTER_WEBHOOKS", SCHEMA, id="better_webhooks.E001")


def seconds(key: str) -> float | None:
    """A duration setting in seconds; None when it is off."""
    return getattr(webhook_settings, key)
