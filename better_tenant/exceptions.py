"""Errors raised by better_tenant; each says what is wrong and what to do."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured, ObjectDoesNotExist


class TenantError(Exception):
    """Base class of better_tenant errors."""


class InvalidTenantId(TenantError, ValueError):
    """A value given as a tenant id is not a UUID or a Tenant."""


class InvalidTenantSlug(TenantError, ValueError):
    """A slug does not have the allowed shape."""


class DuplicateTenantSlug(TenantError, ValueError):
    """Another tenant already uses the slug."""


class TenantNotFound(TenantError, ObjectDoesNotExist):
    """No tenant has the given id or slug."""


class SystemRoleUnavailable(TenantError, ImproperlyConfigured):
    """The database role cannot enter the system role used by run_as_system()."""


class TenantScopeRequired(TenantError, RuntimeError):
    """Code that needs a tenant ran outside run_as() or a tenant-resolved request."""


class ScopeConflict(TenantError, RuntimeError):
    """Two unrelated tenant scopes were opened on one database connection at the same time."""
