"""System checks of better_webhooks; they never raise.

Ids: E001 BETTER_WEBHOOKS not a dict or an unknown key; E002 ENCRYPTION_KEYS unusable, or empty
with DEBUG off; E003 IDEMPOTENCY_WINDOW, SECRET_ROTATION_OVERLAP or DISABLE_AFTER not a duration;
E004 RETRY_SCHEDULE not a list of durations; E005 MAX_ATTEMPTS; E006 EVENTS or ALLOWED_CIDRS;
E007 ABANDONED_LIMIT; E008 another value of the wrong type or out of range; E009 the portal
mounted without better_tenant. W001 no ENCRYPTION_KEYS with DEBUG on; W002 ALLOW_HTTP_LOCALHOST
with DEBUG off; W003 a lease shorter than one delivery attempt; W004 the portal mounted without
SessionMiddleware. The ids of single values (the portal's durations are E003, PORTAL_AUTHORIZE
E008) are declared with their keys in better_webhooks.conf.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks


@checks.register("better_webhooks")
def check_configuration(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """One message per bad key of BETTER_WEBHOOKS, then what the values mean together."""
    from better_webhooks import crypto, events
    from better_webhooks.conf import webhook_settings
    from better_webhooks.exceptions import ConfigurationError

    problems = webhook_settings.problems()
    messages = [problem.as_check() for problem in problems]
    bad = {problem.key for problem in problems}
    if "ENCRYPTION_KEYS" not in bad:
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
                        "BETTER_WEBHOOKS['ENCRYPTION_KEYS'] is empty; endpoint secrets are "
                        "encrypted with a key derived from SECRET_KEY because DEBUG is on.",
                        hint="Set ENCRYPTION_KEYS from `manage.py better_webhooks generate-key` "
                        "before production (DEBUG off makes this an error).",
                        id="better_webhooks.W001",
                    )
                )
    if "EVENTS" not in bad:
        # The entries are well formed; registering them checks their names and schemas.
        try:
            events.load_settings_events()
        except ConfigurationError as exc:
            messages.append(checks.Error(str(exc), id="better_webhooks.E006"))
    messages.extend(_check_lease(webhook_settings))
    if webhook_settings.ALLOW_HTTP_LOCALHOST and not settings.DEBUG:
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

    lease = float(webhook_settings.LEASE_SECONDS)
    attempt = float(webhook_settings.CONNECT_TIMEOUT) + float(webhook_settings.TIMEOUT)
    batch = webhook_settings.WORKER_BATCH_SIZE
    threads = webhook_settings.WORKER_CONCURRENCY
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


@checks.register("better_webhooks", checks.Tags.urls)
def check_portal(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """What the portal needs once the URLconf mounts it: better_tenant, and sessions for links."""
    from better_tenant.shortcuts import tenancy_installed

    if not _portal_mounted():
        return []
    if not tenancy_installed():
        return [
            checks.Error(
                "The webhooks portal (better_webhooks.portal.urls) is mounted, but better_tenant "
                "is not installed: the portal shows one tenant's endpoints, under row-level "
                "security, and without tenancy there is no tenant to show. It answers every "
                "request with a 503.",
                hint="Add better_tenant to INSTALLED_APPS, or remove the portal's include() from "
                "the URLconf (the admin and the API manage the platform's endpoints).",
                id="better_webhooks.E009",
            )
        ]
    if not _has_session_middleware():
        return [
            checks.Warning(
                "The webhooks portal is mounted without SessionMiddleware: a signed portal link "
                "is kept in the session, so links cannot open the portal (PORTAL_AUTHORIZE still "
                "can).",
                hint="Add 'django.contrib.sessions.middleware.SessionMiddleware' to MIDDLEWARE.",
                id="better_webhooks.W004",
            )
        ]
    return []


def _portal_mounted() -> bool:
    from django.urls import NoReverseMatch, reverse

    try:
        reverse("better_webhooks_portal:endpoints")
    except NoReverseMatch:
        return False
    except Exception:
        # A URLconf that does not import is Django's own check to report.
        return False
    return True


def _has_session_middleware() -> bool:
    from django.contrib.sessions.middleware import SessionMiddleware
    from django.utils.module_loading import import_string

    for path in settings.MIDDLEWARE:
        try:
            middleware = import_string(path)
        except ImportError:
            continue
        if isinstance(middleware, type) and issubclass(middleware, SessionMiddleware):
            return True
    return False
