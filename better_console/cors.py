"""CORS of the console endpoints: the allow-list decides; unknown origins get no CORS headers.

Every answer to an allowed origin carries Allow-Origin (the origin itself), Allow-Headers and
Allow-Methods, as the published console servers send them; a preflight adds Max-Age. In
development and test runs any ``http(s)`` origin on ``localhost`` or ``127.0.0.1`` (any port) is
allowed too, so that a console UI served locally can connect without configuration.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from django.http import HttpRequest, HttpResponseBase
from django.utils.cache import patch_vary_headers

ALLOW_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
ALLOW_HEADERS = "Authorization, Content-Type"
# Beyond the published servers: lets the browser read an export's filename and a 429's wait.
EXPOSE_HEADERS = "Content-Disposition, Retry-After"
MAX_AGE = "86400"
LOCAL_HOSTS = ("localhost", "127.0.0.1")


def is_local_origin(origin: str) -> bool:
    """True for ``http(s)://localhost[:port]`` and ``http(s)://127.0.0.1[:port]``."""
    try:
        parts = urlsplit(origin)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and parts.hostname in LOCAL_HOSTS
        and not parts.username
        and not parts.password
        and parts.path in ("", "/")
        and not parts.query
        and not parts.fragment
    )


def origin_allowed(origin: str, origins: Iterable[str]) -> bool:
    """True when ``origin`` is on the allow-list, or local while development rules apply."""
    # Exactly as a browser sends it (lowercase, no path): the allow-list is kept in that form.
    if origin in origins:
        return True
    from better_console.environment import relaxed_environment

    return is_local_origin(origin) and relaxed_environment()


def allowed_origin(request: HttpRequest, origins: Iterable[str]) -> str | None:
    """The request's Origin when it is allowed, else None."""
    origin = request.headers.get("Origin")
    if not origin or not origin.isprintable():
        return None
    return origin if origin_allowed(origin, origins) else None


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
    response["Access-Control-Allow-Headers"] = ALLOW_HEADERS
    response["Access-Control-Allow-Methods"] = ALLOW_METHODS
    if preflight:
        response["Access-Control-Max-Age"] = MAX_AGE
    else:
        response["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
    return response
