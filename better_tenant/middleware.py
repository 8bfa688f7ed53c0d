"""TenantMiddleware: resolve the request's tenant and run the whole view in its scope."""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, cast

from asgiref.sync import async_to_sync, iscoroutinefunction, sync_to_async
from django.core.signals import got_request_exception
from django.http import HttpRequest, HttpResponseBase, JsonResponse
from django.utils.functional import SimpleLazyObject

from better_core.http import HybridMiddleware, stream_in_scope
from better_tenant import resolvers
from better_tenant.conf import tenant_settings
from better_tenant.context import get_context, run_as
from better_tenant.errors import TenantForbidden, TenantMismatch

ERROR_CODE = "TENANT_NOT_RESOLVED"
MISMATCH_CODE = TenantMismatch.code
FORBIDDEN_CODE = TenantForbidden.code
FORBIDDEN_MESSAGE = (
    "You may not use this tenant. Sign in as a member of the tenant, or name a tenant you "
    "belong to."
)
_FAILED = "_better_tenant_failed"


class _Rollback(Exception):
    """Leaves the tenant scope with an error so that it rolls back, carrying the response out."""

    def __init__(self, response: HttpResponseBase) -> None:
        super().__init__("the view raised; rolling back its transaction")
        self.response = response


def _mark_failed(sender: Any = None, request: HttpRequest | None = None, **_: Any) -> None:
    # Django turns exceptions into 500 responses before they reach an outer middleware; this
    # receiver (and process_exception) remember that one happened so the scope rolls back.
    if request is not None:
        setattr(request, _FAILED, True)


got_request_exception.connect(_mark_failed, dispatch_uid="better_tenant.middleware.failed")


# --- helpers shared with the decorator ---------------------------------------------------------


def _load_tenant(tenant_id: uuid.UUID) -> Any:
    context = get_context()
    if context.tenant_id == tenant_id:
        # Inside the scope, share the row the scope caches for get_tenant().
        return context.tenant
    # Outside the scope (an outer middleware, say) a tenant sees no tenants row: read it as the
    # system does.
    from better_tenant.api import get_tenant
    from better_tenant.exceptions import TenantNotFound

    try:
        return get_tenant(tenant_id)
    except TenantNotFound:
        return None


class _TenantRequest(HttpRequest):
    """The attributes ``attach`` sets on a request, for type checking (it keeps its class)."""

    tenant_id: uuid.UUID | None
    tenant: Any  # the Tenant (a lazy object) or None
    atenant: Callable[[], Awaitable[Any]]


def attach(request: HttpRequest, tenant_id: uuid.UUID | None) -> None:
    """Set ``request.tenant_id``, a lazy ``request.tenant`` and ``await request.atenant()``."""
    request = cast(_TenantRequest, request)
    request.tenant_id = tenant_id
    if tenant_id is None:
        request.tenant = None
        request.atenant = _no_tenant
        return
    loaded: dict[str, Any] = {}

    def load() -> Any:
        if "tenant" not in loaded:
            loaded["tenant"] = _load_tenant(tenant_id)
        return loaded["tenant"]

    async def atenant() -> Any:
        # Async views may not touch the ORM synchronously, hence this awaitable twin.
        if "tenant" in loaded:
            return loaded["tenant"]
        return await sync_to_async(load, thread_sensitive=True)()

    request.tenant = SimpleLazyObject(load)
    request.atenant = atenant


async def _no_tenant() -> None:
    return None


def missing_tenant_response(request: HttpRequest, status: int | None = None) -> HttpResponseBase:
    """The answer to a request without a known tenant: ON_MISSING_TENANT or a JSON error."""
    handler = tenant_settings.ON_MISSING_TENANT
    if status is None and handler is not None:
        if iscoroutinefunction(handler):
            return async_to_sync(handler)(request)
        return handler(request)
    return _missing_json(status)


async def amissing_tenant_response(
    request: HttpRequest, status: int | None = None
) -> HttpResponseBase:
    """``missing_tenant_response`` for async code."""
    handler = tenant_settings.ON_MISSING_TENANT
    if status is None and handler is not None:
        if iscoroutinefunction(handler):
            return await handler(request)
        return await sync_to_async(handler, thread_sensitive=True)(request)
    return _missing_json(status)


def _missing_json(status: int | None) -> JsonResponse:
    return JsonResponse(
        {
            "error": "No tenant could be resolved from this request. Name an existing tenant by "
            f"its id or slug through {resolvers.plan().describe()}.",
            "code": ERROR_CODE,
        },
        status=status or tenant_settings.MISSING_TENANT_STATUS,
    )


def refusal_response(error: TenantMismatch | TenantForbidden) -> JsonResponse:
    """403 ``{"error", "code"}`` for a tenant the request may not use."""
    return JsonResponse({"error": str(error) or FORBIDDEN_MESSAGE, "code": error.code}, status=403)


def resolve_or_refuse(
    request: HttpRequest, status: int | None = None
) -> uuid.UUID | HttpResponseBase:
    """The id of the request's tenant, or the response refusing it (missing or mismatched)."""
    try:
        tenant_id = resolvers.resolve_tenant_id(request)
    except TenantMismatch as mismatch:
        return refusal_response(mismatch)
    if tenant_id is None:
        return missing_tenant_response(request, status)
    return tenant_id


async def aresolve_or_refuse(
    request: HttpRequest, status: int | None = None
) -> uuid.UUID | HttpResponseBase:
    """``resolve_or_refuse`` for async code."""
    # Slug lookups and custom resolvers may query the database and a cache.
    resolve = sync_to_async(resolvers.resolve_tenant_id, thread_sensitive=True)
    try:
        tenant_id = await resolve(request)
    except TenantMismatch as mismatch:
        return refusal_response(mismatch)
    if tenant_id is None:
        return await amissing_tenant_response(request, status)
    return tenant_id


async def _awaited(value: Awaitable[Any]) -> Any:
    return await value


def _is_async(check: Callable[..., Any]) -> bool:
    # A callable object with an async __call__ is async too, though not a coroutine function.
    return iscoroutinefunction(check) or iscoroutinefunction(type(check).__call__)


def _refused(allowed: Any) -> JsonResponse | None:
    # Only True lets the request in: a forgotten return (None), a row or a queryset refuses.
    return None if allowed is True else refusal_response(TenantForbidden(FORBIDDEN_MESSAGE))


def authorization_refusal(request: HttpRequest, tenant_id: uuid.UUID) -> JsonResponse | None:
    """Ask ``AUTHORIZE(request, tenant_id)``; None when it allows, else the 403 response.

    Runs inside the tenant's scope, so the check reads the tenant's rows (a membership table
    under row-level security included) and nothing of any other tenant.
    """
    check = resolvers.plan().authorize
    if check is None:
        return None
    try:
        if _is_async(check):
            allowed = async_to_sync(check)(request, tenant_id)
        else:
            allowed = check(request, tenant_id)
            if inspect.isawaitable(allowed):
                # E.g. a functools.partial of an async function: await what it returned.
                allowed = async_to_sync(_awaited)(allowed)
    except TenantForbidden as refusal:
        return refusal_response(refusal)
    return _refused(allowed)


async def aauthorization_refusal(request: HttpRequest, tenant_id: uuid.UUID) -> JsonResponse | None:
    """``authorization_refusal`` for async code; a sync check runs in the scope's thread."""
    check = resolvers.plan().authorize
    if check is None:
        return None
    try:
        if _is_async(check):
            allowed = await check(request, tenant_id)
        else:
            allowed = await sync_to_async(check, thread_sensitive=True)(request, tenant_id)
            if inspect.isawaitable(allowed):
                allowed = await allowed
    except TenantForbidden as refusal:
        return refusal_response(refusal)
    return _refused(allowed)


def run_in_scope(
    request: HttpRequest, tenant_id: uuid.UUID, call: Callable[[], HttpResponseBase]
) -> HttpResponseBase:
    """Run ``call`` as ``tenant_id`` if ``AUTHORIZE`` allows it.

    With ``ATOMIC`` the view runs in one transaction, rolled back if it raised; without it
    (the default) it opens the transactions it asks for, as it would without the middleware.
    """
    attach(request, tenant_id)
    request.__dict__.pop(_FAILED, None)
    try:
        with run_as(tenant_id, atomic=tenant_settings.ATOMIC):
            refusal = authorization_refusal(request, tenant_id)
            if refusal is not None:
                # Code after this middleware must not take the refused tenant for the request's.
                attach(request, None)
                return refusal
            response = call()
            if request.__dict__.get(_FAILED):
                raise _Rollback(response)
    except _Rollback as rollback:
        response = rollback.response
    return scope_streaming(response, tenant_id)


async def arun_in_scope(
    request: HttpRequest, tenant_id: uuid.UUID, call: Callable[[], Awaitable[HttpResponseBase]]
) -> HttpResponseBase:
    """``run_in_scope`` for async views; the async ORM calls of the view see the tenant."""
    attach(request, tenant_id)
    request.__dict__.pop(_FAILED, None)
    try:
        async with run_as(tenant_id, atomic=tenant_settings.ATOMIC):
            refusal = await aauthorization_refusal(request, tenant_id)
            if refusal is not None:
                attach(request, None)
                return refusal
            response = await call()
            if request.__dict__.get(_FAILED):
                raise _Rollback(response)
    except _Rollback as rollback:
        response = rollback.response
    return scope_streaming(response, tenant_id)


def scope_streaming(response: HttpResponseBase, tenant_id: uuid.UUID) -> HttpResponseBase:
    """Make a streaming body, read after the view returned, run as ``tenant_id`` too."""
    # One transaction for the whole body, whatever ATOMIC says: a server-side cursor of
    # .iterator() then lives and dies with it, where a holdable one declared in autocommit would
    # not survive PgBouncer's transaction pooling between two fetches.
    return stream_in_scope(response, lambda: run_as(tenant_id))


# --- the middleware ------------------------------------------------------------------------------


class TenantMiddleware(HybridMiddleware):
    """Resolve the tenant of every request it applies to and run the view as that tenant.

    Applies to paths under ``PATH_PREFIXES`` (all when empty) that are not under
    ``EXEMPT_PATHS`` nor under the prefixes installed apps register (``better_tenant.registry``).
    A request naming no tenant, or an unknown one, is answered with
    ``ON_MISSING_TENANT(request)`` or a JSON error with ``MISSING_TENANT_STATUS``; one whose
    verified token and another source name different tenants gets a 403 ``TENANT_MISMATCH``; one
    that ``AUTHORIZE`` refuses gets a 403 ``TENANT_FORBIDDEN``. Otherwise the view runs as the
    tenant: each of its statements carries the tenant in its own round trip, and the view opens
    the transactions it asks for (``ATOMIC_REQUESTS``, ``atomic()``), no others. With
    ``BETTER_TENANT["ATOMIC"] = True`` it runs in one transaction, rolled back if it raises.

    Under ASGI the scope lives on the thread Django's ASGIHandler gives each request for its
    database work, so concurrent requests never share a transaction. Django's test AsyncClient
    does not give each request such a thread: requests sent concurrently through it (e.g. with
    ``asyncio.gather``) share one connection; send those through ``ASGIHandler`` instead.
    """

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        super().__init__(get_response)
        # A wrong setting fails when the server loads its middleware, not on some request.
        resolvers.plan()

    def handle(self, request: HttpRequest) -> HttpResponseBase:
        plan = resolvers.plan()
        if not plan.applies_to(request.path_info):
            attach(request, None)
            return self.get_response(request)
        resolved = resolve_or_refuse(request)
        if not isinstance(resolved, uuid.UUID):
            return resolved
        return run_in_scope(request, resolved, lambda: self.get_response(request))

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        plan = resolvers.plan()
        if not plan.applies_to(request.path_info):
            attach(request, None)
            return await self.get_response(request)
        resolved = await aresolve_or_refuse(request)
        if not isinstance(resolved, uuid.UUID):
            return resolved
        return await arun_in_scope(request, resolved, lambda: self.get_response(request))

    def process_exception(self, request: HttpRequest, exception: Exception) -> None:
        _mark_failed(request=request)
