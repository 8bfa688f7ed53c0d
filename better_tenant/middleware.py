"""TenantMiddleware: resolve the request's tenant and run the whole view in its scope."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import async_to_sync, iscoroutinefunction, sync_to_async
from django.core.signals import got_request_exception
from django.http import HttpRequest, HttpResponseBase, JsonResponse
from django.utils.functional import SimpleLazyObject

from better_core.http import HybridMiddleware, stream_in_scope
from better_tenant import resolvers
from better_tenant.conf import tenant_settings
from better_tenant.context import get_context, run_as

ERROR_CODE = "TENANT_NOT_RESOLVED"
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
    from better_tenant.models import Tenant

    return Tenant.objects.filter(pk=tenant_id).first()


def attach(request: HttpRequest, tenant_id: uuid.UUID | None) -> None:
    """Set ``request.tenant_id``, a lazy ``request.tenant`` and ``await request.atenant()``."""
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


def run_in_scope(
    request: HttpRequest, tenant_id: uuid.UUID, call: Callable[[], HttpResponseBase]
) -> HttpResponseBase:
    """Run ``call`` as ``tenant_id`` in one transaction; roll back if the view raised."""
    attach(request, tenant_id)
    request.__dict__.pop(_FAILED, None)
    try:
        with run_as(tenant_id):
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
        async with run_as(tenant_id):
            response = await call()
            if request.__dict__.get(_FAILED):
                raise _Rollback(response)
    except _Rollback as rollback:
        response = rollback.response
    return scope_streaming(response, tenant_id)


def scope_streaming(response: HttpResponseBase, tenant_id: uuid.UUID) -> HttpResponseBase:
    """Make a streaming body, read after the view returned, run as ``tenant_id`` too."""
    # One transaction for the whole body: server-side cursors of .iterator() live only as long as
    # the transaction that declared them.
    return stream_in_scope(response, lambda: run_as(tenant_id))


# --- the middleware ------------------------------------------------------------------------------


class TenantMiddleware(HybridMiddleware):
    """Resolve the tenant of every request it applies to and run the view as that tenant.

    Applies to paths under ``PATH_PREFIXES`` (all when empty) that are not under
    ``EXEMPT_PATHS``. A request naming no tenant, or an unknown one, is answered with
    ``ON_MISSING_TENANT(request)`` or a JSON error with ``MISSING_TENANT_STATUS``. Otherwise the
    view runs inside ``run_as(tenant_id)``: one transaction, rolled back if the view raises.

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
        tenant_id = resolvers.resolve_tenant_id(request)
        if tenant_id is None:
            return missing_tenant_response(request)
        return run_in_scope(request, tenant_id, lambda: self.get_response(request))

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        plan = resolvers.plan()
        if not plan.applies_to(request.path_info):
            attach(request, None)
            return await self.get_response(request)
        # Slug lookups and custom resolvers may query the database and a cache.
        tenant_id = await sync_to_async(resolvers.resolve_tenant_id, thread_sensitive=True)(request)
        if tenant_id is None:
            return await amissing_tenant_response(request)
        return await arun_in_scope(request, tenant_id, lambda: self.get_response(request))

    def process_exception(self, request: HttpRequest, exception: Exception) -> None:
        _mark_failed(request=request)
