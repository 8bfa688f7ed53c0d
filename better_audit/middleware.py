"""AuditContextMiddleware: who acts in a request, and its correlation id, for every audit entry.

For each request the middleware builds an ``AuditContext`` and installs it for the whole request
(the view, the middleware inside it, and the iteration of a streaming response body):

- ``actor``: the configured ``ACTOR_EXTRACTORS`` are tried in order; the first that yields an
  actor wins. Extractors that return a ``Deferred`` (``from_user``) are read when an entry is
  written, so a user authenticated inside the view (Django REST framework) is recorded, and the
  order of the list is kept: with ``[from_user, from_bearer_token]`` an authenticated user wins
  over the token's subject, and the token's subject is used for anonymous requests.
- ``correlation_id``: the ``CORRELATION_HEADER`` request header when it holds a plausible id
  (1 to 200 visible ASCII characters), otherwise a new UUID4; echoed in the response header.
- ``metadata``: ``{"method": ..., "path": ...}`` (the path without its query string, which may
  carry tokens). No IP address or user agent: add them with ``merge_audit_context`` if needed.

Failures are open by default: an extractor that raises is reported to ``ON_EXTRACTION_ERROR(exc,
request)`` (or logged as a warning naming the extractor and the exception's type) and skipped.

With ``FAIL_CLOSED`` the view is not run and the answer is 401 with
``{"error": ..., "code": "AUDIT_ACTOR_REQUIRED"}`` when an extractor raised, or when no actor is
found just before the view runs (after URL resolution, in ``process_view``; deferred extractors
are read at that moment). Authentication that happens inside the view, as Django REST framework's
does, is not visible then: under ``FAIL_CLOSED`` such APIs need an extractor that reads the
credential itself (``from_bearer_token`` with a ``JWT_KEY``, or a custom one). Views that must
stay reachable without an actor (login, health checks) are marked with ``@audit_actor_optional``.

Place the middleware after ``AuthenticationMiddleware`` so that ``request.user`` is there.
"""

from __future__ import annotations

import inspect
import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from asgiref.sync import async_to_sync, iscoroutinefunction, sync_to_async
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.http import HttpRequest, HttpResponseBase, JsonResponse

from better_audit.conf import audit_settings
from better_audit.context import AuditContext, reset_audit_context, set_audit_context
from better_audit.extractors import (
    LOOP_SAFE,
    Deferred,
    build_extractor,
    extractor_name,
    to_actor_id,
)
from better_core.http import HybridMiddleware, stream_each_chunk_in

ERROR_CODE = "AUDIT_ACTOR_REQUIRED"
_STATE_ATTR = "_better_audit_extraction"
_CORRELATION_ID = re.compile(r"^[\x21-\x7e]{1,200}$")

logger = logging.getLogger(__name__)

V = TypeVar("V")


# --- configured extractors ----------------------------------------------------------------------

_cache: dict[str, Any] = {}


def configured_extractors() -> list[Callable[[Any], Any]]:
    """The ``ACTOR_EXTRACTORS`` setting as callables; raises ImproperlyConfigured if it is wrong."""
    try:
        source = audit_settings.ACTOR_EXTRACTORS
    except Exception as exc:
        raise ImproperlyConfigured(f"BETTER_AUDIT['ACTOR_EXTRACTORS']: {exc}") from exc
    cached = _cache.get("extractors")
    if cached is not None and cached[0] is source:
        return cached[1]
    if not isinstance(source, list | tuple | None):
        raise ImproperlyConfigured(
            "BETTER_AUDIT['ACTOR_EXTRACTORS'] must be a list of extractors (dotted paths, "
            "callables or [factory, {options}] pairs)."
        )
    try:
        built = [build_extractor(entry) for entry in source or ()]
    except (TypeError, ValueError) as exc:
        raise ImproperlyConfigured(f"BETTER_AUDIT['ACTOR_EXTRACTORS']: {exc}") from exc
    # One tuple, so that a thread never pairs one setting with another's extractors.
    _cache["extractors"] = (source, built)
    return built


def _clear_cache(*, setting: str, **_: Any) -> None:
    if setting == "BETTER_AUDIT":
        _cache.clear()


setting_changed.connect(_clear_cache, dispatch_uid="better_audit.middleware.clear_cache")


# --- extraction ---------------------------------------------------------------------------------


@dataclass
class Extraction:
    """What the extractors found for one request."""

    values: list[str | Deferred] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    context: AuditContext | None = None


def report_extraction_error(exc: BaseException, request: Any, source: Any = None) -> None:
    """Hand ``exc`` to ``ON_EXTRACTION_ERROR(exc, request)``, or log it; never raise."""
    handler = audit_settings.ON_EXTRACTION_ERROR
    if handler is not None:
        try:
            handler(exc, request)
        except Exception:
            logger.exception("BETTER_AUDIT['ON_EXTRACTION_ERROR'] raised while handling an error.")
        return
    # The exception's message may quote credentials or personal data; its type is enough here.
    logger.warning(
        "Audit actor extractor %s raised %s; the request goes on without this extractor's "
        "actor. Set BETTER_AUDIT['ON_EXTRACTION_ERROR'] to receive the exception.",
        extractor_name(source),
        type(exc).__name__,
    )


def _accept(extraction: Extraction, value: Any) -> bool:
    """Keep an extractor's value; True when it is an actor id, which ends the chain."""
    if isinstance(value, Deferred):
        extraction.values.append(value)
        return False
    actor = to_actor_id(value)
    if actor is None:
        return False
    extraction.values.append(actor)
    return True


def _failed(extraction: Extraction, exc: Exception, request: HttpRequest, extractor: Any) -> None:
    extraction.errors.append(exc)
    report_extraction_error(exc, request, extractor)


def extract(request: HttpRequest) -> Extraction:
    """Run the extractors for a sync request."""
    extraction = Extraction()
    for extractor in configured_extractors():
        try:
            if iscoroutinefunction(extractor):
                value = async_to_sync(extractor)(request)
            else:
                value = extractor(request)
                if inspect.isawaitable(value):
                    value = async_to_sync(_await)(value)
        except Exception as exc:
            _failed(extraction, exc, request, extractor)
            continue
        if _accept(extraction, value):
            break
    return extraction


async def aextract(request: HttpRequest) -> Extraction:
    """Run the extractors for an async request; blocking ones run in a worker thread."""
    extraction = Extraction()
    for extractor in configured_extractors():
        try:
            if iscoroutinefunction(extractor):
                value = await extractor(request)
            elif getattr(extractor, LOOP_SAFE, False):
                value = extractor(request)
            else:
                value = await sync_to_async(extractor, thread_sensitive=True)(request)
            if inspect.isawaitable(value):
                value = await value
            if isinstance(value, Deferred):
                # Load what the deferred actor needs now: reading it later from the event loop
                # (an async view, a task sent from one) could not query the database.
                await value.aprepare()
        except Exception as exc:
            _failed(extraction, exc, request, extractor)
            continue
        if _accept(extraction, value):
            break
    return extraction


async def _await(awaitable: Any) -> Any:
    return await awaitable


def actor_chain(values: list[str | Deferred], request: Any) -> Callable[[], str | None]:
    """The lazy actor: the first value in order that yields an id when an entry is written."""

    def actor() -> str | None:
        for value in values:
            if isinstance(value, str):
                return value
            try:
                resolved = value.resolve()
            except Exception as exc:
                report_extraction_error(exc, request, value)
                continue
            if resolved is not None:
                return resolved
        return None

    return actor


def correlation_id_of(request: HttpRequest) -> str:
    """The request's correlation id: the configured header's value if plausible, else a UUID4."""
    header = audit_settings.CORRELATION_HEADER
    if header:
        value = request.headers.get(header)
        if value and _CORRELATION_ID.match(value):
            return value
    return str(uuid.uuid4())


def build_context(request: HttpRequest, extraction: Extraction) -> AuditContext:
    """The AuditContext of a request from what the extractors found."""
    values = extraction.values
    fields: dict[str, Any] = {
        "correlation_id": correlation_id_of(request),
        "metadata": {"method": request.method, "path": request.path},
    }
    if values and isinstance(values[0], str):
        fields["actor_id"] = values[0]
    elif values:
        fields["actor"] = actor_chain(values, request)
    return AuditContext(**fields)


# --- fail-closed --------------------------------------------------------------------------------


def audit_actor_optional(view: V) -> V:
    """Mark a view (function, or class-based view class) as reachable without an actor.

    Only matters with ``FAIL_CLOSED``: login, sign-up, health checks and webhooks from third
    parties have no actor and must still be answered.
    """
    view.audit_actor_optional = True  # type: ignore[attr-defined]
    return view


def _is_optional(view_func: Any) -> bool:
    if getattr(view_func, "audit_actor_optional", False):
        return True
    for attr in ("view_class", "cls"):
        view_class = getattr(view_func, attr, None)
        if view_class is not None and getattr(view_class, "audit_actor_optional", False):
            return True
    return False


def actor_required_response(reason: str) -> JsonResponse:
    """The 401 answer of a fail-closed request without an actor."""
    return JsonResponse(
        {
            "error": f"{reason} This endpoint records who acts in its audit log and accepts no "
            "anonymous requests: authenticate, or send the credential that "
            "BETTER_AUDIT['ACTOR_EXTRACTORS'] reads.",
            "code": ERROR_CODE,
        },
        status=401,
    )


_EXTRACTION_FAILED = "The actor of this request could not be determined."
_NO_ACTOR = "This request names no actor."


def _install(request: HttpRequest, extraction: Extraction) -> AuditContext:
    """Build the request's context and keep the extraction on it for ``process_view``."""
    extraction.context = build_context(request, extraction)
    setattr(request, _STATE_ATTR, extraction)
    return extraction.context


def _to_check(
    request: HttpRequest, view_func: Any
) -> tuple[list[BaseException], AuditContext] | None:
    """The request's extraction errors and context when ``FAIL_CLOSED`` must check them before
    ``view_func`` runs."""
    if not audit_settings.FAIL_CLOSED or _is_optional(view_func):
        return None
    extraction: Extraction | None = getattr(request, _STATE_ATTR, None)
    if extraction is None or extraction.context is None:
        return None
    return extraction.errors, extraction.context


# --- streaming ----------------------------------------------------------------------------------


def scope_streaming(response: HttpResponseBase, context: AuditContext) -> HttpResponseBase:
    """Make the iteration of a streaming body, after the view returned, see ``context`` too."""
    return stream_each_chunk_in(response, lambda: set_audit_context(context), reset_audit_context)


# --- the middleware -----------------------------------------------------------------------------


class AuditContextMiddleware(HybridMiddleware):
    """Install the request's audit context (actor, correlation id, method and path)."""

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        super().__init__(get_response)
        if self.async_mode:
            # Django adapts process_view to the handler's mode; an async one spares a thread hop.
            # Django looks the hook up on the instance, so it may be swapped per instance.
            self.process_view = self._aprocess_view  # type: ignore[method-assign,assignment]
        # A wrong setting fails when the server loads its middleware, not on some request.
        configured_extractors()

    def handle(self, request: HttpRequest) -> HttpResponseBase:
        context = _install(request, extract(request))
        token = set_audit_context(context)
        try:
            response = self.get_response(request)
        finally:
            reset_audit_context(token)
        return self._finish(response, context)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        context = _install(request, await aextract(request))
        token = set_audit_context(context)
        try:
            response = await self.get_response(request)
        finally:
            reset_audit_context(token)
        return self._finish(response, context)

    def _finish(self, response: HttpResponseBase, context: AuditContext) -> HttpResponseBase:
        header = audit_settings.CORRELATION_HEADER
        if header and context.correlation_id and not response.has_header(header):
            response[header] = context.correlation_id
        return scope_streaming(response, context)

    def process_view(
        self, request: HttpRequest, view_func: Any, view_args: Any, view_kwargs: Any
    ) -> HttpResponseBase | None:
        checked = _to_check(request, view_func)
        if checked is None:
            return None
        errors, context = checked
        if errors:
            return actor_required_response(_EXTRACTION_FAILED)
        if context.resolve_actor_id() is None:
            return actor_required_response(_NO_ACTOR)
        return None

    async def _aprocess_view(
        self, request: HttpRequest, view_func: Any, view_args: Any, view_kwargs: Any
    ) -> HttpResponseBase | None:
        checked = _to_check(request, view_func)
        if checked is None:
            return None
        errors, context = checked
        if errors:
            return actor_required_response(_EXTRACTION_FAILED)
        # Custom deferred actors may query the database, which the event loop may not do.
        actor = await sync_to_async(context.resolve_actor_id, thread_sensitive=True)()
        if actor is None:
            return actor_required_response(_NO_ACTOR)
        return None
