"""Console product ``tenant``: list, read, create, rename and delete tenants.

Served at ``/.well-known/better/tenant/`` by better_console, with these permissions:

- ``GET /tenants`` (read): tenants oldest first; ``?search=`` matches name or slug (contains, any
  case); ``?limit=``, ``?cursor=``.
- ``GET /tenants/:id`` (read).
- ``POST /tenants`` (write): ``{"name", "slug"?}``; the slug defaults to the slugified name. 201.
- ``PATCH /tenants/:id`` (write): ``{"name"?, "slug"?}``.
- ``DELETE /tenants/:id`` (admin): the tenant and, through the foreign keys, every row it owns. 204.

A tenant is ``{"id", "name", "slug", "createdAt"}``. The errors of ``better_tenant.api`` keep their
meaning: ``INVALID_TENANT_SLUG`` and ``INVALID_TENANT_NAME`` (400), ``DUPLICATE_TENANT_SLUG``
(409, another tenant has the slug), ``TENANT_NOT_FOUND`` (404).
"""

from __future__ import annotations

from typing import Any

from django.db.models import Q

from better_console.exceptions import ConsoleError
from better_console.products import (
    bad_request,
    console_scope,
    fields_json,
    json_body,
    keyset_page,
    param,
    path_id,
)
from better_console.registry import ConsoleRequest, ConsoleResponse, Endpoint, register_product
from better_tenant import api
from better_tenant.exceptions import (
    DuplicateTenantSlug,
    InvalidTenantId,
    InvalidTenantSlug,
    TenantError,
    TenantNotFound,
)
from better_tenant.models import Tenant

FIELDS = ("id", "name", "slug", "created_at")
MAX_NAME = Tenant._meta.get_field("name").max_length
#: better_tenant's errors as (status, code), most specific first.
ERRORS: tuple[tuple[type[TenantError], int, str], ...] = (
    (TenantNotFound, 404, "TENANT_NOT_FOUND"),
    (DuplicateTenantSlug, 409, "DUPLICATE_TENANT_SLUG"),
    (InvalidTenantSlug, 400, "INVALID_TENANT_SLUG"),
    (InvalidTenantId, 400, "INVALID_ID"),
)


def tenant_json(tenant: Tenant) -> dict[str, Any]:
    return fields_json(tenant, FIELDS)


def _error(exc: TenantError) -> ConsoleError:
    for cls, status, code in ERRORS:
        if isinstance(exc, cls):
            return ConsoleError(str(exc), status=status, code=code)
    return ConsoleError(str(exc), status=400, code="TENANT_ERROR")


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value.strip()) > MAX_NAME:
        raise bad_request(
            f"name must be a non-empty string of at most {MAX_NAME} characters; got {value!r}.",
            "INVALID_TENANT_NAME",
        )
    return value


def _slug(value: Any) -> str:
    if not isinstance(value, str):
        raise bad_request(
            f"slug must be a string such as 'acme-corp'; got {value!r}.", "INVALID_TENANT_SLUG"
        )
    return value


def _get(tenant_id: Any) -> Tenant:
    tenant = Tenant.objects.filter(pk=tenant_id).first()
    if tenant is None:
        raise ConsoleError(
            f"No tenant has the id {tenant_id}.", status=404, code="TENANT_NOT_FOUND"
        )
    return tenant


def list_tenants(request: ConsoleRequest) -> ConsoleResponse:
    search = param(request, "search")
    with console_scope():
        tenants = Tenant.objects.all()
        if search:
            tenants = tenants.filter(Q(name__icontains=search) | Q(slug__icontains=search))
        page = keyset_page(
            tenants,
            request,
            lambda rows: [tenant_json(tenant) for tenant in rows],
            descending=False,
        )
    return ConsoleResponse(body=page)


def get_tenant(request: ConsoleRequest) -> ConsoleResponse:
    tenant_id = path_id(request)
    with console_scope():
        return ConsoleResponse(body=tenant_json(_get(tenant_id)))


def create_tenant(request: ConsoleRequest) -> ConsoleResponse:
    body = json_body(request, ("name", "slug"))
    name = _name(body.get("name"))
    slug = _slug(body["slug"]) if body.get("slug") is not None else None
    try:
        with console_scope():
            tenant = api.create_tenant(name, slug)
    except TenantError as exc:
        raise _error(exc) from exc
    return ConsoleResponse(status=201, body=tenant_json(tenant))


def update_tenant(request: ConsoleRequest) -> ConsoleResponse:
    tenant_id = path_id(request)
    body = json_body(request, ("name", "slug"))
    name = _name(body["name"]) if body.get("name") is not None else None
    slug = _slug(body["slug"]) if body.get("slug") is not None else None
    try:
        with console_scope():
            tenant = api.update_tenant(tenant_id, name=name, slug=slug)
    except TenantError as exc:
        raise _error(exc) from exc
    return ConsoleResponse(body=tenant_json(tenant))


def delete_tenant(request: ConsoleRequest) -> ConsoleResponse:
    tenant_id = path_id(request)
    try:
        with console_scope():
            api.delete_tenant(tenant_id)
    except TenantError as exc:
        raise _error(exc) from exc
    return ConsoleResponse(status=204)


ENDPOINTS = (
    Endpoint("GET", "/tenants", list_tenants, "read"),
    Endpoint("GET", "/tenants/:id", get_tenant, "read"),
    Endpoint("POST", "/tenants", create_tenant, "write"),
    Endpoint("PATCH", "/tenants/:id", update_tenant, "write"),
    Endpoint("DELETE", "/tenants/:id", delete_tenant, "admin"),
)


def register() -> None:
    """Register (or re-register) the ``tenant`` product with the console."""
    register_product("tenant", "Tenants", ENDPOINTS, replace=True)
