"""Tenant CRUD for code and commands; every call runs in system mode."""

from __future__ import annotations

import re
import uuid
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from django.db import IntegrityError
from django.utils.text import slugify

from better_tenant.context import get_context, run_as_system, to_tenant_id
from better_tenant.exceptions import DuplicateTenantSlug, InvalidTenantSlug, TenantNotFound
from better_tenant.models import Tenant

SLUG_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
MAX_SLUG = 63
MAX_LIST = 1000


def validate_slug(slug: str) -> str:
    """Return ``slug`` if it is lowercase letters, digits and single hyphens (max 63)."""
    if not isinstance(slug, str) or not slug or len(slug) > MAX_SLUG or not SLUG_RE.match(slug):
        raise InvalidTenantSlug(
            f"{slug!r} is not a valid tenant slug: use 1-{MAX_SLUG} lowercase letters, digits and "
            "single hyphens, starting and ending with a letter or digit (e.g. 'acme-corp')."
        )
    return slug


def create_tenant(
    name: str, slug: str | None = None, *, id: uuid.UUID | str | None = None
) -> Tenant:
    """Create a tenant; the slug defaults to the slugified name."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidTenantSlug("A tenant needs a non-empty name.")
    slug = validate_slug(slug if slug is not None else slugify(name)[:MAX_SLUG].strip("-"))
    tenant = Tenant(name=name.strip(), slug=slug)
    if id is not None:
        tenant.id = to_tenant_id(id)
    with run_as_system():
        if Tenant.objects.filter(slug=slug).exists():
            raise _duplicate(slug)
        try:
            with run_as_system():  # a savepoint, so a lost race leaves the outer block usable
                tenant.save(force_insert=True)
        except IntegrityError as exc:
            raise _duplicate(slug) from exc
    return tenant


def list_tenants(limit: int = 100, offset: int = 0) -> list[Tenant]:
    """Tenants ordered by creation, ``limit`` (1-1000) at a time from ``offset``."""
    if not isinstance(limit, int) or not 1 <= limit <= MAX_LIST:
        raise ValueError(f"limit must be an integer from 1 to {MAX_LIST}, got {limit!r}.")
    if not isinstance(offset, int) or offset < 0:
        raise ValueError(f"offset must be a non-negative integer, got {offset!r}.")
    with run_as_system():
        return list(Tenant.objects.order_by("created_at", "slug")[offset : offset + limit])


def _system(own: uuid.UUID | None = None) -> AbstractContextManager[Any]:
    # A tenant scope sees only its own row of tenants, so other reads need system mode; code
    # already in it (update_tenant, delete_tenant) or reading its own tenant needs no savepoint.
    context = get_context()
    if context.is_system or (own is not None and context.tenant_id == own):
        return nullcontext()
    return run_as_system()


def get_tenant(tenant_id: Any) -> Tenant:
    """The tenant with this id, or TenantNotFound."""
    pk = to_tenant_id(tenant_id)
    with _system(own=pk):
        tenant = Tenant.objects.filter(pk=pk).first()
    if tenant is None:
        raise TenantNotFound(f"No tenant has the id {tenant_id}.")
    return tenant


def get_tenant_by_slug(slug: str) -> Tenant | None:
    """The tenant with this slug, or None."""
    if not isinstance(slug, str) or not SLUG_RE.match(slug) or len(slug) > MAX_SLUG:
        return None
    with _system():
        return Tenant.objects.filter(slug=slug).first()


def update_tenant(tenant_id: Any, *, name: str | None = None, slug: str | None = None) -> Tenant:
    """Rename a tenant or change its slug."""
    with run_as_system():
        tenant = get_tenant(tenant_id)
        if name is not None:
            if not isinstance(name, str) or not name.strip():
                raise InvalidTenantSlug("A tenant needs a non-empty name.")
            tenant.name = name.strip()
        if slug is not None and slug != tenant.slug:
            validate_slug(slug)
            if Tenant.objects.filter(slug=slug).exclude(pk=tenant.pk).exists():
                raise _duplicate(slug)
            tenant.slug = slug
        try:
            with run_as_system():
                tenant.save()
        except IntegrityError as exc:
            raise _duplicate(slug or tenant.slug) from exc
    return tenant


def delete_tenant(tenant_id: Any) -> None:
    """Delete a tenant and, through the foreign keys, every row it owns."""
    with run_as_system():
        tenant = get_tenant(tenant_id)
        tenant.delete()


def _duplicate(slug: str) -> DuplicateTenantSlug:
    return DuplicateTenantSlug(
        f"A tenant with the slug {slug!r} already exists; choose another slug."
    )
