"""Per-client-IP throttling of the session endpoints: fixed windows counted in a Django cache."""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass

from django.core.cache import caches
from django.http import HttpRequest

from better_core import rates


@dataclass(frozen=True)
class Verdict:
    """Whether a request may proceed, and how long to wait when it may not."""

    allowed: bool
    retry_after: int = 0


def client_ip(request: HttpRequest, num_proxies: int = 0) -> str:
    """The client's address: REMOTE_ADDR, or the X-Forwarded-For entry ``num_proxies`` from the end.

    Only entries appended by the app's own proxies are trusted; anything further left was sent
    by the client and could be made up. The address is normalised (see ``throttle_key``).
    """
    remote = throttle_key(request.META.get("REMOTE_ADDR", "")) or "unknown"
    if num_proxies <= 0:
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    forwarded = [part for part in forwarded if part]
    if not forwarded:
        return remote
    return throttle_key(forwarded[-min(num_proxies, len(forwarded))]) or remote


def throttle_key(address: str) -> str | None:
    """The bucket of an address: IPv4 as is, IPv6 by its /64 network; None when not an address.

    One IPv6 subscriber holds a whole /64, so counting single addresses would hand out 2**64
    budgets; an IPv4-mapped IPv6 address is its IPv4 address, whatever the spelling.
    """
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def hit(scope: str, ident: str, rate: tuple[int, int] | None, cache_alias: str) -> Verdict:
    """Count one request of ``ident`` against ``rate`` (count, period seconds) in ``scope``."""
    if rate is None:
        return Verdict(True)
    limit, period = rate
    window = rates.hit(caches[cache_alias], f"better_console:throttle:{scope}:{ident}", period)
    if window.used <= limit:
        return Verdict(True)
    return Verdict(False, max(1, math.ceil(window.resets_in)))
