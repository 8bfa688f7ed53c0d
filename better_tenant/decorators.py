"""The ``tenant_required`` view decorator: run a view as the request's tenant, or refuse it."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponseBase

from better_tenant.context import get_tenant_id
from better_tenant.middleware import (
    aresolve_or_refuse,
    arun_in_scope,
    attach,
    resolve_or_refuse,
    run_in_scope,
)

V = TypeVar("V", bound=Callable[..., Any])


def tenant_required(view: V | None = None, *, status: int | None = None) -> Any:
    """Make a view need a tenant: ``@tenant_required`` or ``@tenant_required(status=401)``.

    Inside an active tenant scope (TenantMiddleware already resolved the request) the view runs
    as is. Otherwise the tenant is resolved and authorized like the middleware does and the view
    runs as the tenant as under the middleware (``ATOMIC`` included); a request without a known
    tenant gets the JSON error with ``status`` (default ``MISSING_TENANT_STATUS``, or the
    ``ON_MISSING_TENANT`` handler when no status is given), a mismatched or refused one a 403.
    Works on sync and async views.
    """
    if status is not None and (not isinstance(status, int) or not 400 <= status <= 599):
        raise ValueError(
            f"tenant_required(status=...) must be an HTTP error status (400-599), got {status!r}."
        )
    if view is None:
        return functools.partial(tenant_required, status=status)
    if not callable(view):
        raise TypeError(
            f"tenant_required got {view!r} instead of a view; pass the status by keyword: "
            "@tenant_required(status=401)."
        )

    if iscoroutinefunction(view):

        @functools.wraps(view)
        async def async_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            active = get_tenant_id()
            if active is not None:
                if getattr(request, "tenant_id", None) != active:
                    attach(request, active)
                return await view(request, *args, **kwargs)
            resolved = await aresolve_or_refuse(request, status)
            if not isinstance(resolved, uuid.UUID):
                return resolved
            return await arun_in_scope(request, resolved, lambda: view(request, *args, **kwargs))

        return async_wrapper

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        active = get_tenant_id()
        if active is not None:
            if getattr(request, "tenant_id", None) != active:
                attach(request, active)
            return view(request, *args, **kwargs)
        resolved = resolve_or_refuse(request, status)
        if not isinstance(resolved, uuid.UUID):
            return resolved
        return run_in_scope(request, resolved, lambda: view(request, *args, **kwargs))

    return wrapper
