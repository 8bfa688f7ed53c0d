"""Console product ``tenant``: list, count, read, create, rename and delete tenants.

Served at ``/.well-known/better/tenant/`` by better_console, as the published tenant server
serves it:

- ``GET /tenants`` (read): a bare array of tenants, oldest first, paged by ``?limit=`` (1-1000,
  larger is capped; default 50) and ``?offset=``. Beyond the published server: ``?search=``
  matches name or slug (contains, any case).
- ``GET /tenants/:id`` (read); ``GET /stats`` (read): ``{"tenantCount"}``.
- ``POST /tenants`` (write): ``{"name", "slug"}``. 201.
- ``PATCH /tenants/:id`` (write): ``{"name"?, "slug"?}``.
- ``DELETE /tenants/:id`` (admin): the tenant and, through the foreign keys, every row it owns;
  204, also when no tenant has the id (the delete is idempotent).

A tenant is ``{"id", "name", "slug", "createdAt"}``. Errors are ``{"error", "code"}``; where the
published server fails with a 500 on bad input, this one answers what is wrong: a slug that is
not a slug or is taken (400 ``INVALID_TENANT_SLUG``, 409 ``DUPLICATE_TENANT_SLUG``), an empty
name (400), an id that is not a UUID (400 ``INVALID_ID``), an unknown id on PATCH (404).

It also registers the ``tenants`` section of the console dashboard (``tenant_summary``).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from django.db.models import Q

from better_console.dashboard import DashboardWindow, changelist_url, register_section
from better_console.exceptions import ConsoleError
from better_console.products import (
    bad_request,
    bounded_int,
    console_scope,
    param,
    parse_limit,
    path_id,
)
from better_console.registry import ConsoleRequest, ConsoleResponse, Endpoint, register_product
from better_core.admin import EXACT_COUNT_LIMIT, EstimatedCountPaginator
from better_core.durations import iso_millis
from better_tenant import api
from better_tenant.exceptions import (
    DuplicateTenantSlug,
    InvalidTenantId,
    InvalidTenantSlug,
    TenantError,
    TenantNotFound,
)
from better_tenant.models import Tenant

if TYPE_CHECKING:
    from django.contrib.admin import AdminSite
    from django.http import HttpRequest

FIELDS = ("id", "name", "slug", "created_at")
MAX_FIELD = 255
#: better_tenant's errors as (status, code), most specific first.
ERRORS: tuple[tuple[type[TenantError], int, str], ...] = (
    (TenantNotFound, 404, "TENANT_NOT_FOUND"),
    (DuplicateTenantSlug, 409, "DUPLICATE_TENANT_SLUG"),
    (InvalidTenantSlug, 400, "INVALID_TENANT_SLUG"),
    (InvalidTenantId, 400, "INVALID_ID"),
)


def tenant_json(tenant: Tenant) -> dict[str, Any]:
    return {
        "id": str(tenant.id),
        "name": tenant.name,
        "slug": tenant.slug,
        "createdAt": iso_millis(tenant.created_at),
    }


def _error(exc: TenantError) -> ConsoleError:
    for cls, status, code in ERRORS:
        if isinstance(exc, cls):
            return ConsoleError(str(exc), status=status, code=code)
    return ConsoleError(str(exc), status=400, code="TENANT_ERROR")


def _object(request: ConsoleRequest) -> dict[str, Any]:
    if not isinstance(request.body, dict):
        raise bad_request("Request body is required", "INVALID_BODY")
    return request.body


def _get(tenant_id: Any) -> Tenant:
    tenant = Tenant.objects.filter(pk=tenant_id).first()
    if tenant is None:
        raise ConsoleError("Tenant not found", status=404, code="TENANT_NOT_FOUND")
    return tenant


def _page_bounds(request: ConsoleRequest) -> tuple[int, int]:
    limit, offset = parse_limit(request), 0
    text = (request.query or {}).get("offset")
    if text is not None:
        parsed = bounded_int(text, 0, sys.maxsize)
        if parsed is None:
            raise bad_request("Invalid 'offset': must be a non-negative integer", "INVALID_OFFSET")
        offset = parsed
    return limit, offset


def list_tenants(request: ConsoleRequest) -> ConsoleResponse:
    limit, offset = _page_bounds(request)
    search = param(request, "search")
    with console_scope():
        tenants = Tenant.objects.order_by("created_at", "id")
        if search:
            tenants = tenants.filter(Q(name__icontains=search) | Q(slug__icontains=search))
        body = [tenant_json(tenant) for tenant in tenants[offset : offset + limit]]
    return ConsoleResponse(body=body)


def tenant_stats(request: ConsoleRequest) -> ConsoleResponse:
    with console_scope():
        return ConsoleResponse(body={"tenantCount": Tenant.objects.count()})


def get_tenant(request: ConsoleRequest) -> ConsoleResponse:
    tenant_id = path_id(request)
    with console_scope():
        return ConsoleResponse(body=tenant_json(_get(tenant_id)))


def create_tenant(request: ConsoleRequest) -> ConsoleResponse:
    body = _object(request)
    raw_name, raw_slug = body.get("name"), body.get("slug")
    name = raw_name if isinstance(raw_name, str) else ""
    slug = raw_slug if isinstance(raw_slug, str) else ""
    if not name.strip() or not slug.strip():
        raise bad_request("name and slug are required", "INVALID_BODY")
    if len(name) > MAX_FIELD or len(slug) > MAX_FIELD:
        raise bad_request(f"name and slug must not exceed {MAX_FIELD} characters", "INVALID_BODY")
    try:
        with console_scope():
            tenant = api.create_tenant(name.strip(), slug.strip())
    except TenantError as exc:
        raise _error(exc) from exc
    return ConsoleResponse(status=201, body=tenant_json(tenant))


def update_tenant(request: ConsoleRequest) -> ConsoleResponse:
    tenant_id = path_id(request)
    body = _object(request)
    changes: dict[str, str] = {}
    for field in ("name", "slug"):
        value = body.get(field)
        if isinstance(value, str):
            if len(value) > MAX_FIELD:
                raise bad_request(f"{field} must not exceed {MAX_FIELD} characters", "INVALID_BODY")
            changes[field] = value
    if "name" in changes and not changes["name"].strip():
        raise bad_request("name must not be empty", "INVALID_TENANT_NAME")
    try:
        with console_scope():
            tenant = api.update_tenant(tenant_id, **changes) if changes else _get(tenant_id)
    except TenantError as exc:
        raise _error(exc) from exc
    return ConsoleResponse(body=tenant_json(tenant))


def delete_tenant(request: ConsoleRequest) -> ConsoleResponse:
    tenant_id = path_id(request)
    try:
        with console_scope():
            api.delete_tenant(tenant_id)
    except TenantNotFound:
        pass
    except TenantError as exc:
        raise _error(exc) from exc
    return ConsoleResponse(status=204)


ENDPOINTS = (
    Endpoint("GET", "/tenants", list_tenants, "read"),
    Endpoint("GET", "/tenants/:id", get_tenant, "read"),
    Endpoint("POST", "/tenants", create_tenant, "write"),
    Endpoint("PATCH", "/tenants/:id", update_tenant, "write"),
    Endpoint("DELETE", "/tenants/:id", delete_tenant, "admin"),
    Endpoint("GET", "/stats", tenant_stats, "read"),
)


# --- the console dashboard's section ------------------------------------------------------------


def tenant_summary(using: str | None = None) -> dict[str, Any]:
    """``{"count", "estimated"}``: how many tenants, and whether the figure is an estimate.

    Bounded like the admin's paginator: exact up to ``EXACT_COUNT_LIMIT`` rows, the planner's
    estimate above.
    """
    qs = Tenant.objects.using(using) if using else Tenant.objects.all()
    count = EstimatedCountPaginator(qs, per_page=1).count
    return {"count": count, "estimated": count > EXACT_COUNT_LIMIT}


def dashboard_figures(window: DashboardWindow) -> dict[str, Any]:
    # The tenant count is not windowed: tenants are counted whenever they were created.
    return tenant_summary(window.using)


def dashboard_context(
    site: AdminSite, request: HttpRequest, figures: Mapping[str, Any]
) -> dict[str, Any]:
    return {**figures, "url": changelist_url(site, request, "better_tenant.Tenant")}


def register() -> None:
    """Register (or re-register) the ``tenant`` product and its dashboard section."""
    register_product("tenant", "Tenants", ENDPOINTS, replace=True)
    register_section(
        "tenants",
        order=10,
        figures=dashboard_figures,
        template="admin/better_tenant/dashboard_section.html",
        admin_context=dashboard_context,
        replace=True,
    )
