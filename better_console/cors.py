"""CORS of the console endpoints: the allow-list decides; unknown origins get no CORS headers."""

from __future__ import annotations

from collections.abc import Iterable

from django.http import HttpRequest, HttpResponseBase
from django.utils.cache import patch_vary_headers

ALLOW_METHODS = "GET, POST, PATCH, DELETE, PUT, OPTIONS"
ALLOW_HEADERS = "Content-Type, Authorization"
EXPOSE_HEADERS = "Content-Disposition, Retry-After"
MAX_AGE = "86400"


def allowed_origin(request: HttpRequest, origins: Iterable[str]) -> str | None:
    """The request's Origin when it is on the allow-list (compared without case), else None."""
    origin = request.headers.get("Origin")
    if not origin:
        return None
    return origin if origin.rstrip("/").lower() in origins else None


def apply(
    request: HttpRequest,
    response: HttpResponseBase,
    origins: Iterable[str],
    *,
    preflight: bool = False,
) -> HttpResponseBase:
    """Add the CORS headers the request's origin is entitled to (none for an unknown one)."""
    # The answer differs per Origin, so shared caches must keep them apart.
    patch_vary_headers(response, ("Origin",))
    origin = allowed_origin(request, origins)
    if origin is None:
        return response
    response["Access-Control-Allow-Origin"] = origin
    if preflight:
        response["Access-Control-Allow-Methods"] = ALLOW_METHODS
        response["Access-Control-Allow-Headers"] = ALLOW_HEADERS
        response["Access-Control-Max-Age"] = MAX_AGE
    else:
        response["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
    return response
