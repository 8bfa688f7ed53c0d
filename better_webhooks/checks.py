"""System checks of better_webhooks (ids better_webhooks.E001...)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks


def check_configuration(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Encryption keys, durations, the retry schedule, the event catalog, network lists, the
    lease and the abandon limit."""
    from better_core.durations import parse_duration
    from better_webhooks import crypto, events, ssrf
    from better_webhooks.conf import webhook_settings
    from better_webhooks.exceptions import ConfigurationError

    messages: list[checks.CheckMessage] = []
    for key in webhook_settings.unknown_keys():
        messages.append(
            checks.Error(
                f"BETTER_WEBHOOKS has an unknown key {key!r}.",
                hint=f"Known keys: {', '.join(sorted(webhook_settings.defaults))}.",
                id="better_webhooks.E001",
            )
        )
    try:
        keys = crypto.configured_keys()
    except ConfigurationError as exc:
        messages.append(
            checks.Error(
                str(exc),
                hint="Run `manage.py better_webhooks generate-key`.",
                id="better_webhooks.E002",
            )
        )
    else:
        if keys[0][0] == crypto.DEV_KEY_ID:
            messages.append(
                checks.Warning(
                    "BETTER_WEBHOOKS['ENCRYPTION_KEYS'] is empty; endpoint secrets are encrypted "
                    "with a key derived from SECRET_KEY because DEBUG is on.",
                    hint="Set ENCRYPTION_KEYS from `manage.py better_webhooks generate-key` "
                    "before production (DEBUG off makes this an error).",
                    id="better_webhooks.W001",
                )
            )
    for key in ("IDEMPOTENCY_WINDOW", "SECRET_ROTATION_OVERLAP", "DISABLE_AFTER"):
        value = webhook_settings.raw(key)
        if value is None or isinstance(value, int | float):
            continue
        try:
            parse_duration(value)
        except ValueError as exc:
            messages.append(
                checks.Error(f"BETTER_WEBHOOKS[{key!r}]: {exc}", id="better_webhooks.E003")
            )
    schedule = webhook_settings.raw("RETRY_SCHEDULE")
    try:
        if not schedule:
            raise ValueError("it is empty")
        for item in schedule:
            if not isinstance(item, int | float):
                parse_duration(item)
    except (ValueError, TypeError) as exc:
        messages.append(
            checks.Error(
                f"BETTER_WEBHOOKS['RETRY_SCHEDULE'] is not a list of durations: {exc}",
                hint='For example ["5s", "5min", "30min", "2h", "5h", "10h"].',
                id="better_webhooks.E004",
            )
        )
    max_attempts = webhook_settings.raw("MAX_ATTEMPTS")
    if not isinstance(max_attempts, int) or max_attempts < 1:
        messages.append(
            checks.Error(
                "BETTER_WEBHOOKS['MAX_ATTEMPTS'] must be a positive integer.",
                id="better_webhooks.E005",
            )
        )
    abandoned_limit = webhook_settings.raw("ABANDONED_LIMIT")
    # ``type() is int``: True is an int too, and not a count.
    if type(abandoned_limit) is not int or abandoned_limit < 1:
        messages.append(
            checks.Error(
                "BETTER_WEBHOOKS['ABANDONED_LIMIT'] must be a positive integer.",
                hint="The number of times a delivery's worker may stop while sending it before "
                "the delivery is failed; the default is 3.",
                id="better_webhooks.E007",
            )
        )
    try:
        events.load_settings_events()
        ssrf.allowed_networks()
    except ConfigurationError as exc:
        messages.append(checks.Error(str(exc), id="better_webhooks.E006"))
    messages.extend(_check_lease(webhook_settings))
    if webhook_settings.raw("ALLOW_HTTP_LOCALHOST") and not settings.DEBUG:
        messages.append(
            checks.Warning(
                "BETTER_WEBHOOKS['ALLOW_HTTP_LOCALHOST'] is on with DEBUG off.",
                hint="Allow plain http to localhost only in development and tests.",
                id="better_webhooks.W002",
            )
        )
    return messages


def _check_lease(webhook_settings: Any) -> list[checks.CheckMessage]:
    # An attempt starts only while the lease covers its longest run plus the time to record it;
    # under a shorter lease every claimed delivery is released unsent, again and again.
    from better_webhooks.delivery import LEASE_MARGIN

    try:
        lease = float(webhook_settings.raw("LEASE_SECONDS"))
        attempt = float(webhook_settings.raw("CONNECT_TIMEOUT")) + float(
            webhook_settings.raw("TIMEOUT")
        )
        batch = max(1, int(webhook_settings.raw("WORKER_BATCH_SIZE")))
        threads = max(1, int(webhook_settings.raw("WORKER_CONCURRENCY")))
    except (TypeError, ValueError):
        return []
    needed = attempt + LEASE_MARGIN
    if lease >= needed:
        return []
    whole_batch = -(-batch // threads) * attempt + LEASE_MARGIN
    return [
        checks.Warning(
            f"BETTER_WEBHOOKS['LEASE_SECONDS'] ({lease:g} s) cannot cover one delivery attempt: "
            f"an attempt may last CONNECT_TIMEOUT + TIMEOUT = {attempt:g} s and needs "
            f"{LEASE_MARGIN:g} s more to be recorded, so workers release every delivery they "
            "claim without sending it.",
            hint=f"Set LEASE_SECONDS to at least {needed:g}; {whole_batch:g} lets a whole batch "
            f"of slow receivers ({batch} deliveries on {threads} threads) finish in one lease. "
            "Or lower CONNECT_TIMEOUT and TIMEOUT.",
            id="better_webhooks.W003",
        )
    ]
