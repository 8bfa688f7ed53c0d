"""The one view behind ``/.well-known/better/``: console routes, product routes, CORS, errors.

Routed as the published console servers route: ``console/health``, ``console/capabilities`` and
``console/session/*`` are unauthenticated (the handshake that opens a session);
``<product>/<path>`` routes of registered products always need ``Authorization: Bearer <session
token>`` with the endpoint's permission level; a path and method that match no route are a 404,
and a preflight of any existing route a 204. Every answer is JSON but the page a sign-in mail's
link opens (product handlers may return their own ``HttpResponse``, e.g. a streamed export), and
carries the CORS headers its ``Origin`` is entitled to.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from asgiref.sync import async_to_sync
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.core.serializers.json import DjangoJSONEncoder
from django.core.validators import validate_email
from django.db import DatabaseError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from better_console import cors, magic_link, pages, sessions, throttling
from better_console.conf import ConsoleConfig, console_settings, load
from better_console.environment import relaxed_environment
from better_console.exceptions import ConsoleError, ConsoleSettingsError
from better_console.refusals import auto_approve_refused, weak_secret, wildcard_refused
from better_console.registry import ConsoleRequest, ConsoleResponse, get_product, split_path
from better_core.jwt import MAX_TOKEN_LENGTH

logger = logging.getLogger("better_console")

UNDEFINED_TABLE = "42P01"


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Any:
    response = JsonResponse(body, status=status, safe=False, encoder=DjangoJSONEncoder)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def empty_response(status: int) -> HttpResponse:
    """A response without a body, and so without a Content-Type."""
    response = HttpResponse(status=status)
    del response["Content-Type"]
    return response


def error_response(error: ConsoleError) -> HttpResponseBase:
    headers = {}
    if error.status == 429 and "retryAfter" in error.extra:
        headers["Retry-After"] = str(error.extra["retryAfter"])
    return json_response(error.body(), error.status, headers)


def not_found() -> ConsoleError:
    # A path that exists under another method is not found either, as the published servers say.
    return ConsoleError("Not found", status=404, code="NOT_FOUND")


def configuration_error(exc: ConsoleSettingsError) -> ConsoleError:
    logger.error("better_console: %s (%s)", exc, exc.id)
    if not relaxed_environment():
        # Anyone may call these routes: the details stay in the log and in `manage.py check`.
        return ConsoleError(
            "BETTER_CONSOLE is misconfigured; run `manage.py check` on the server.",
            status=500,
            code=exc.code,
        )
    return ConsoleError(exc.message, status=500, code=exc.code, hint=exc.hint)


# --- entry point ----------------------------------------------------------------------------------


@csrf_exempt
def console_view(request: HttpRequest, path: str = "") -> HttpResponseBase:
    """Answer any request under ``/.well-known/better/``."""
    try:
        config: ConsoleConfig | ConsoleSettingsError = load()
    except ConsoleSettingsError as exc:
        config = exc
    origins = config.allowed_origins if isinstance(config, ConsoleConfig) else _fallback_origins()
    segments = split_path(path)
    try:
        if request.method == "OPTIONS":
            # A preflight of any route that exists, whatever the method it asks about.
            if not _exists(segments, config):
                raise not_found()
            return cors.apply(request, empty_response(204), origins, preflight=True)
        response = _route(request, segments, config)
    except ConsoleError as error:
        response = error_response(error)
    return cors.apply(request, response, origins)


def _fallback_origins() -> tuple[str, ...]:
    # With BETTER_CONSOLE unusable the console UI must still be able to read why; a bad
    # ALLOWED_ORIGINS reads as the default, the hosted console.
    return console_settings.ALLOWED_ORIGINS


def _exists(segments: tuple[str, ...], config: ConsoleConfig | ConsoleSettingsError) -> bool:
    """True when some method is served at ``segments``."""
    if segments[:1] == ("console",):
        magic = isinstance(config, ConsoleConfig) and config.magic_link is not None
        return any(
            key[0] == segments[1:] and (magic or not magic_only)
            for key, (_, magic_only) in _CONSOLE_ROUTES.items()
        )
    product = get_product(segments[0]) if segments else None
    return product is not None and bool(product.allows_path(segments[1:]))


def _route(
    request: HttpRequest, segments: tuple[str, ...], config: ConsoleConfig | ConsoleSettingsError
) -> HttpResponseBase:
    if not segments:
        raise not_found()
    if segments[0] == "console":
        return _console_route(request, segments[1:], config)
    return _product_route(request, segments, config)


# --- console routes -------------------------------------------------------------------------------


def _console_route(
    request: HttpRequest, segments: tuple[str, ...], config: ConsoleConfig | ConsoleSettingsError
) -> HttpResponseBase:
    route = _CONSOLE_ROUTES.get((segments, (request.method or "").upper()))
    if route is None:
        raise not_found()
    view, magic_only = route
    if view is health:
        return health(request)
    if isinstance(config, ConsoleSettingsError):
        raise configuration_error(config)
    if magic_only and config.magic_link is None:
        # These routes exist only with magic link sign-in.
        raise not_found()
    if segments[0] == "session":
        _throttle(request, config, "poll" if segments == ("session", "poll") else "session")
    with _storage():
        return view(request, config)


def health(request: HttpRequest, config: Any = None) -> HttpResponseBase:
    return json_response({"status": "ok"})


def capabilities(request: HttpRequest, config: ConsoleConfig) -> HttpResponseBase:
    from better_console.registry import products

    return json_response(
        {
            "products": [product.id for product in products()],
            "authMethods": config.auth_methods,
            "permissions": list(config.allowed_actions),
        }
    )


def session_init(request: HttpRequest, config: ConsoleConfig) -> HttpResponseBase:
    body = _object_body(request)
    if not config.auth_methods:
        raise ConsoleError("No session method configured.", status=500, code="NO_SESSION_METHOD")
    _refuse_weak_signing(config)
    if config.auto_approve:
        refused = auto_approve_refused(config)
        if refused is not None:
            raise ConsoleError(refused.message, status=403, code=refused.code)
        email = body.get("email")
        email = None if email is None else _email(email)
        issued = sessions.issue_stateless(config, email)
        return json_response({"method": sessions.AUTO_APPROVE, **issued.body()})
    email = body.get("email")
    if not email or not isinstance(email, str):
        raise ConsoleError(
            "An email address is required to sign in with a magic link.",
            status=400,
            code="EMAIL_REQUIRED",
        )
    email = _email(email)
    refused = wildcard_refused(config)
    if refused is not None:
        raise ConsoleError(refused.message, status=500, code=refused.code, hint=refused.hint)
    session_id = magic_link.start(
        config,
        email,
        app_name=_plain_line(_optional_text(body, "appName"), 200),
        base_url=_optional_text(body, "baseUrl"),
        request=request,
    )
    return json_response({"method": sessions.MAGIC_LINK, "sessionId": session_id})


def session_verify(request: HttpRequest, config: ConsoleConfig) -> HttpResponseBase:
    body = _object_body(request)
    code, session_id = magic_link.checked_pair(body.get("code"), body.get("session_id"))
    return json_response({"status": magic_link.verify(config, session_id, code)})


def session_verify_page(request: HttpRequest, config: ConsoleConfig) -> HttpResponseBase:
    """The page a sign-in mail's link opens: verifies the link, says so in HTML."""
    try:
        code, session_id = magic_link.checked_pair(
            request.GET.get("code"), request.GET.get("session_id")
        )
        magic_link.verify(config, session_id, code)
    except ConsoleError as error:
        return pages.verification_page(ok=False, detail=error.error, status=error.status)
    return pages.verification_page(ok=True)


def session_poll(request: HttpRequest, config: ConsoleConfig) -> HttpResponseBase:
    session_id = magic_link.checked_session_id(request.GET.get("session_id"))
    return json_response({"status": magic_link.poll(config, session_id)})


def session_claim(request: HttpRequest, config: ConsoleConfig) -> HttpResponseBase:
    body = _object_body(request)
    session_id = magic_link.checked_session_id(body.get("session_id"))
    _refuse_weak_signing(config)
    return json_response(magic_link.claim(config, session_id).body())


# (path below console/, method) -> (view, exists only with magic link sign-in)
_CONSOLE_ROUTES: dict[tuple[tuple[str, ...], str], tuple[Callable[..., HttpResponseBase], bool]] = {
    (("health",), "GET"): (health, False),
    (("capabilities",), "GET"): (capabilities, False),
    (("session", "init"), "POST"): (session_init, False),
    (("session", "verify"), "POST"): (session_verify, True),
    (("session", "verify"), "GET"): (session_verify_page, True),
    (("session", "poll"), "GET"): (session_poll, True),
    (("session", "claim"), "POST"): (session_claim, True),
}


# --- product routes -------------------------------------------------------------------------------


def _product_route(
    request: HttpRequest, segments: tuple[str, ...], config: ConsoleConfig | ConsoleSettingsError
) -> HttpResponseBase:
    product = get_product(segments[0])
    if product is None:
        raise not_found()
    below = segments[1:]
    method = (request.method or "").upper()
    resolved = product.resolve(method, below)
    if resolved is None:
        raise not_found()
    endpoint, params = resolved
    if isinstance(config, ConsoleSettingsError):
        raise configuration_error(config)
    _refuse_weak_signing(config)
    token = _bearer_token(request)
    if token is None:
        raise ConsoleError("Missing session token", status=401, code="MISSING_TOKEN")
    if len(token) > MAX_TOKEN_LENGTH:
        raise sessions.InvalidSessionError()
    with _storage():
        session = sessions.verify(token, config)
    if not session.has_permission(endpoint.required_permission):
        raise ConsoleError("Insufficient permissions", status=403, code="FORBIDDEN")
    console_request = ConsoleRequest(
        method=method,
        path="/" + "/".join(segments),
        params=params,
        query={key: request.GET.get(key, "") for key in request.GET},
        body=_body(request),
        headers=request.headers,
        session=session,
        http_request=request,
    )
    try:
        result = endpoint.handler(console_request)
        if inspect.isawaitable(result):
            result = async_to_sync(_await)(result)
        return _to_response(result)
    except ConsoleError:
        raise
    except Http404:
        raise not_found() from None
    except PermissionDenied:
        raise ConsoleError("Insufficient permissions", status=403, code="FORBIDDEN") from None
    except Exception as exc:
        _report(exc, config, console_request)
        return json_response({"error": "Internal server error", "code": "INTERNAL_ERROR"}, 500)


def _bearer_token(request: HttpRequest) -> str | None:
    """The token of ``Authorization: Bearer <token>`` (one space, any case of "Bearer"), or None
    for no such header (a token too long to be ours is kept, to be refused as invalid)."""
    parts = request.META.get("HTTP_AUTHORIZATION", "").split(" ")
    if len(parts) != 2 or parts[0].lower() != "bearer" or not parts[1]:
        return None
    return parts[1]


async def _await(awaitable: Any) -> Any:
    return await awaitable


def _to_response(result: Any) -> HttpResponseBase:
    """A handler's ConsoleResponse, HttpResponse, or plain JSON body (200; None is a 204)."""
    if isinstance(result, HttpResponseBase):
        return result
    if not isinstance(result, ConsoleResponse):
        result = ConsoleResponse(status=204 if result is None else 200, body=result)
    if result.body is None:
        response: HttpResponseBase = empty_response(result.status)
        for name, value in result.headers.items():
            response[name] = value
        return response
    return json_response(result.body, result.status, result.headers)


def _report(exc: Exception, config: ConsoleConfig, request: ConsoleRequest) -> None:
    logger.exception("better_console: %s %s failed", request.method, request.path)
    if config.on_error is None:
        return
    try:
        config.on_error(exc)
    except Exception:
        logger.exception("better_console: BETTER_CONSOLE['ON_ERROR'] failed")


# --- request pieces -------------------------------------------------------------------------------


def _raw_body(request: HttpRequest) -> bytes:
    try:
        return request.body
    except RequestDataTooBig:
        raise ConsoleError("The request body is too large.", status=413, code="TOO_LARGE") from None


def _body(request: HttpRequest) -> Any:
    """The parsed JSON body; None when empty or not JSON by its Content-Type."""
    content_type = (request.content_type or "").lower()
    if content_type != "application/json":
        # As the published servers read bodies: JSON only when declared so. A text/plain body
        # (which a browser sends cross-origin without a preflight) is no body at all; forms and
        # uploads are left to the handler (ConsoleRequest.http_request).
        return None
    raw = _raw_body(request)
    if not raw.strip():
        return None
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        # RecursionError: nesting deeper than the parser's stack ("[[[[...").
        raise ConsoleError(
            "The request body is not valid JSON.", status=400, code="INVALID_JSON"
        ) from None
    if _holds_nul(body):
        # PostgreSQL text cannot hold U+0000: refused here rather than failing in a handler.
        raise ConsoleError(
            "The request body holds a NUL character (\\u0000).", status=400, code="INVALID_JSON"
        )
    return body


def _holds_nul(value: Any) -> bool:
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def _object_body(request: HttpRequest) -> dict[str, Any]:
    body = _body(request)
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ConsoleError(
            "The request body must be a JSON object.", status=400, code="INVALID_BODY"
        )
    return body


def _optional_text(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    return value[:2000] if isinstance(value, str) else None


def _plain_line(value: str | None, limit: int) -> str | None:
    """``value`` as one line of printable text (it may end up in a mail's subject or body)."""
    if value is None:
        return None
    return " ".join("".join(c if c.isprintable() else " " for c in value).split())[:limit]


def _email(value: Any) -> str:
    from django.core.exceptions import ValidationError

    if not isinstance(value, str):
        raise ConsoleError("email must be a string.", status=400, code="INVALID_EMAIL")
    value = value.strip()
    try:
        validate_email(value)
    except ValidationError:
        raise ConsoleError(
            f"{value!r} is not an email address.", status=400, code="INVALID_EMAIL"
        ) from None
    return value


def _throttle(request: HttpRequest, config: ConsoleConfig, scope: str) -> None:
    rate = config.poll_throttle if scope == "poll" else config.throttle
    ident = throttling.client_ip(request, config.num_proxies)
    verdict = throttling.hit(scope, ident, rate, config.cache_alias)
    if not verdict.allowed:
        raise ConsoleError(
            f"Too many requests. Try again in {verdict.retry_after} seconds.",
            status=429,
            code="RATE_LIMITED",
            retryAfter=verdict.retry_after,
        )


def _refuse_weak_signing(config: ConsoleConfig) -> None:
    """No token is issued or accepted without a usable signing secret."""
    if config.token_hash is None:
        raise ConsoleError(
            "No TOKEN_HASH is configured: session tokens cannot be signed.",
            status=500,
            code="TOKEN_HASH_MISSING",
        )
    problem = weak_secret(config)
    if problem is not None:
        raise ConsoleError(problem.message, status=500, code=problem.code, hint=problem.hint)


@contextmanager
def _storage() -> Iterator[None]:
    """Missing console tables answer ADAPTER_REQUIRED instead of a bare server error."""
    try:
        yield
    except DatabaseError as exc:
        if getattr(exc.__cause__, "sqlstate", None) != UNDEFINED_TABLE:
            raise
        raise ConsoleError(
            "Magic link sessions require the console tables: run `manage.py migrate "
            "better_console`.",
            status=500,
            code="ADAPTER_REQUIRED",
        ) from None
