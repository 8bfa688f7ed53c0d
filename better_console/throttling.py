"""Per-client-IP throttling of the session endpoints: fixed windows counted in a Django cache."""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.core.cache import caches
from django.http import HttpRequest


@dataclass(frozen=True)
class Verdict:
    """Whether a request may proceed, and how long to wait when it may not."""

    allowed: bool
    retry_after: int = 0


def client_ip(request: HttpRequest, num_proxies: int = 0) -> str:
    """The client's address: REMOTE_ADDR, or the X-Forwarded-For entry ``num_proxies`` from the end.

    Only entries appended by the app's own proxies are trusted; anything further left was sent
    by the client and could be made up.
    """
    remote = request.META.get("REMOTE_ADDR", "") or "unknown"
    if num_proxies <= 0:
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    forwarded = [part for part in forwarded if part]
    if not forwarded:
        return remote
    return forwarded[-min(num_proxies, len(forwarded))]


def hit(scope: str, ident: str, rate: tuple[int, int] | None, cache_alias: str) -> Verdict:
    """Count one request of ``ident`` against ``rate`` (count, period seconds) in ``scope``."""
    if rate is None:
        return Verdict(True)
    limit, period = rate
    now = time.time()
    window = int(now // period)
    key = f"better_console:throttle:{scope}:{period}:{window}:{ident}"
    cache = caches[cache_alias]
    cache.add(key, 0, timeout=period + 1)
    try:
        count = cache.incr(key)
    except ValueError:
        # The counter expired between add() and incr(): this request opens the window.
        cache.add(key, 1, timeout=period + 1)
        count = 1
    if count <= limit:
        return Verdict(True)
    return Verdict(False, max(1, int((window + 1) * period - now + 0.999)))
