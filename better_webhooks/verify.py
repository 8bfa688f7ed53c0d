"""Receiver side: verify a webhook's signature, and a view decorator that does it.

Accepts either header set (``webhook-id``/``-timestamp``/``-signature`` or ``X-Webhook-*``), a
signature header listing several ``v1,<base64>`` signatures (any match passes), and compares in
constant time. The timestamp must be within ``tolerance`` seconds of now, in both directions.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from better_webhooks.exceptions import EncryptionError, WebhookSignatureError
from better_webhooks.signing import digest

_NAMES = {
    "id": ("webhook-id", "x-webhook-id"),
    "timestamp": ("webhook-timestamp", "x-webhook-timestamp"),
    "signature": ("webhook-signature", "x-webhook-signature"),
}


def _header(headers: Mapping[str, Any], kind: str) -> str | None:
    lowered = {str(key).lower().replace("_", "-"): value for key, value in headers.items()}
    for name in _NAMES[kind]:
        for candidate in (name, f"http-{name}"):
            value = lowered.get(candidate)
            if value:
                return str(value[0] if isinstance(value, list | tuple) else value)
    return None


def assert_webhook_signature(
    payload: str | bytes,
    headers: Mapping[str, Any],
    secret: str | Iterable[str],
    tolerance: int = 300,
    *,
    now: float | None = None,
) -> str:
    """Verify a received webhook or raise WebhookSignatureError; returns the webhook id.

    ``secret`` is the endpoint's ``whsec_...`` secret, or several during a rotation.
    """
    message_id = _header(headers, "id")
    timestamp = _header(headers, "timestamp")
    signature = _header(headers, "signature")
    if not (message_id and timestamp and signature):
        raise WebhookSignatureError(
            "Missing webhook headers: webhook-id, webhook-timestamp and webhook-signature (or "
            "the X-Webhook-* ones) are required.",
            "MISSING_HEADERS",
        )
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise WebhookSignatureError(
            f"Invalid webhook timestamp {timestamp!r}: expected Unix seconds.", "INVALID_TIMESTAMP"
        ) from None
    current = time.time() if now is None else now
    if abs(current - sent_at) > tolerance:
        raise WebhookSignatureError(
            f"Webhook timestamp {sent_at} is more than {tolerance}s away from now: replayed, "
            "delayed, or the clocks disagree.",
            "TIMESTAMP_OUT_OF_TOLERANCE",
        )
    secrets = [secret] if isinstance(secret, str) else list(secret)
    expected = []
    for item in secrets:
        try:
            expected.append(digest(item, message_id, sent_at, payload))
        except EncryptionError as exc:
            raise WebhookSignatureError(str(exc), "INVALID_SECRET") from exc
    for part in signature.split():
        version, _, value = part.partition(",")
        if version != "v1":
            continue
        try:
            received = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            continue
        # Compare against every candidate, so timing does not reveal which secret matched.
        matched = False
        for candidate in expected:
            matched |= hmac.compare_digest(received, candidate)
        if matched:
            return message_id
    raise WebhookSignatureError("No webhook signature matches the payload.", "INVALID_SIGNATURE")


def verify_webhook_signature(
    payload: str | bytes,
    headers: Mapping[str, Any],
    secret: str | Iterable[str],
    tolerance: int = 300,
) -> bool:
    """True when the webhook verifies (see ``assert_webhook_signature``)."""
    try:
        assert_webhook_signature(payload, headers, secret, tolerance)
    except WebhookSignatureError:
        return False
    return True


def webhook_receiver(
    secret: str | Iterable[str] | Callable[[Any], Any],
    *,
    tolerance: int | None = None,
    deduplicate: bool = True,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a Django view that receives webhooks.

    Bad or missing headers answer 400, a wrong signature or stale timestamp 401, both as JSON
    ``{"error", "code"}``. A webhook id already accepted (remembered in the cache for
    ``RECEIVER_DEDUP_TTL``) answers 200 ``{"duplicate": true}`` without calling the view.
    ``secret`` may be a callable ``(request) -> secret(s)``. The view gets
    ``request.webhook_id``.
    """

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def wrapper(request: Any, *args: Any, **kwargs: Any) -> Any:
            from django.core.cache import caches
            from django.http import JsonResponse

            from better_webhooks.conf import webhook_settings

            secrets = secret(request) if callable(secret) else secret
            limit = webhook_settings.TIMESTAMP_TOLERANCE if tolerance is None else tolerance
            try:
                message_id = assert_webhook_signature(
                    request.body, request.headers, secrets, int(limit)
                )
            except WebhookSignatureError as exc:
                status = 400 if exc.code in ("MISSING_HEADERS", "INVALID_TIMESTAMP") else 401
                return JsonResponse({"error": str(exc), "code": exc.code}, status=status)
            request.webhook_id = message_id
            if not deduplicate:
                return view(request, *args, **kwargs)
            cache = caches[webhook_settings.RECEIVER_CACHE]
            key = f"better_webhooks:seen:{hashlib.sha256(message_id.encode()).hexdigest()}"
            if not cache.add(key, 1, timeout=int(webhook_settings.RECEIVER_DEDUP_TTL)):
                return JsonResponse({"received": True, "duplicate": True})
            try:
                response = view(request, *args, **kwargs)
            except Exception:
                # Not handled: the sender's retry must be processed, not dropped as a duplicate.
                cache.delete(key)
                raise
            if getattr(response, "status_code", 200) >= 400:
                cache.delete(key)
            return response

        # Receivers are called by other servers, which send no CSRF token.
        wrapper.csrf_exempt = True  # type: ignore[attr-defined]
        return wrapper

    return decorate
