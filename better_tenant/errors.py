"""Errors of requests and writes: tenant mismatches, refused tenants, translated RLS refusals."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import ProgrammingError
from django.db.backends.signals import connection_created

from better_tenant.exceptions import TenantError


class TenantMismatch(TenantError, PermissionDenied):
    """A verified token names one tenant and another source of the request a different one."""

    code = "TENANT_MISMATCH"

    def __init__(self, message: str, *, source: str = "") -> None:
        super().__init__(message)
        self.source = source


class TenantForbidden(TenantError, PermissionDenied):
    """``BETTER_TENANT["AUTHORIZE"]`` refused the request the tenant it names."""

    code = "TENANT_FORBIDDEN"


class CrossTenantWrite(TenantError, ProgrammingError):
    """A write was refused by a WITH CHECK policy: the row belongs to another tenant."""


def _translate(execute: Any, sql: str, params: Any, many: bool, context: dict) -> Any:
    try:
        return execute(sql, params, many, context)
    except ProgrammingError as exc:
        message = str(exc)
        if "violates row-level security policy" not in message:
            raise
        from better_tenant.context import get_context

        ctx = get_context()
        scope = (
            f"tenant {ctx.tenant_id}"
            if ctx.tenant_id
            else "system mode"
            if ctx.is_system
            else "no tenant"
        )
        raise CrossTenantWrite(
            f"{message.strip()} (better_tenant: the code runs as {scope}; a row can only be "
            "written into the tenant in scope, and a many-to-many link only between rows that "
            "scope can see. Leave tenant_id unset so it defaults to the current tenant, or write "
            "inside run_as(<the row's tenant>).)"
        ) from exc


def _install(sender: Any, connection: Any, **kwargs: Any) -> None:
    if connection.vendor == "postgresql" and _translate not in connection.execute_wrappers:
        connection.execute_wrappers.append(_translate)


def connect() -> None:
    connection_created.connect(_install, dispatch_uid="better_tenant.translate_rls_errors")
