"""Tenancy for code that runs with or without better_tenant installed: one behaviour for both."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

from django.apps import apps
from django.core.signals import setting_changed
from django.db import connections, transaction
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

# Every function imports better_tenant's modules inside its body, so that this module imports
# (and answers) where better_tenant is not an installed app, as django.contrib.sites.shortcuts.


_installed: bool | None = None


def tenancy_installed() -> bool:
    """True when better_tenant is an installed app."""
    global _installed
    # Asked on every audited write: looked up once, and again after INSTALLED_APPS changes.
    if _installed is None:
        _installed = apps.is_installed("better_tenant")
    return _installed


def _forget_installed(*, setting: str, **kwargs: Any) -> None:
    global _installed
    if setting == "INSTALLED_APPS":
        _installed = None


setting_changed.connect(_forget_installed, dispatch_uid="better_tenant.shortcuts.installed")


def current_tenant_id() -> uuid.UUID | None:
    """The tenant in scope, or None (outside any tenant, in system mode, or without tenancy)."""
    if not tenancy_installed():
        return None
    from better_tenant.context import get_context

    return get_context().tenant_id


def current_tenant() -> Any:
    """The Tenant in scope (read once per scope), or None (no tenant in scope, or no tenancy)."""
    if not tenancy_installed():
        return None
    from better_tenant.context import get_context

    return get_context().tenant


def in_system_mode() -> bool:
    """Whether the code runs across tenants: in system mode, or anywhere without tenancy."""
    if not tenancy_installed():
        return True
    from better_tenant.context import get_context

    return get_context().is_system


def to_tenant_id(value: Any) -> uuid.UUID | None:
    """A tenant id from a Tenant, UUID or UUID string; None stays None.

    Raises ``ValueError`` (``InvalidTenantId`` with better_tenant) for anything else.
    """
    if value is None:
        return None
    if tenancy_installed():
        from better_tenant.context import to_tenant_id as convert

        return convert(value)
    if isinstance(value, uuid.UUID):
        return value
    return uuid.UUID(str(getattr(value, "pk", value)))


def system_scope(using: str | None = None) -> AbstractContextManager[Any]:
    """A transaction that sees every tenant's rows (a savepoint when nested).

    ``run_as_system`` with better_tenant; without it a plain ``transaction.atomic``, so that the
    caller's work is atomic either way.
    """
    if tenancy_installed():
        from better_tenant.context import run_as_system

        return run_as_system(using=using)
    return transaction.atomic(using=using)


def tenant_scope(tenant: Any, using: str | None = None) -> AbstractContextManager[Any]:
    """A transaction that may read and write the rows of ``tenant`` (None: of every tenant).

    When the caller's scope already allows that (system mode, or that very tenant) and a
    transaction is open, the caller's transaction is used as it is: an error aborts it anyway,
    so no savepoint is paid. Otherwise a transaction opens in ``tenant``'s scope (``run_as``) or
    in system mode; without better_tenant, a plain transaction.
    """
    tenant_id = to_tenant_id(tenant)
    alias = using or "default"
    if not tenancy_installed() or _scope_allows(tenant_id):
        if connections[alias].in_atomic_block:
            return nullcontext()
        return transaction.atomic(using=alias)
    if tenant_id is None:
        return system_scope(using=alias)
    from better_tenant.context import run_as

    return run_as(tenant_id, using=alias)


def narrowed_scope(tenant: Any, using: str | None = None) -> AbstractContextManager[Any]:
    """A transaction that sees only ``tenant``'s rows, whatever the caller's scope (``run_as``).

    Only better_tenant can narrow rows to one tenant: without it this raises ``LookupError``.
    """
    if not tenancy_installed():
        raise LookupError("Narrowing to one tenant needs better_tenant in INSTALLED_APPS.")
    from better_tenant.context import run_as

    return run_as(tenant, using=using)


def captured_scope() -> Callable[..., AbstractContextManager[Any]]:
    """The caller's scope, to enter again later: ``enter(using=None)`` gives a context manager.

    For work that runs after the scope that asked for it has ended (a streamed response, a
    generator): it enters system mode, that tenant alone or nothing, as the caller had, unless the
    code then already runs in exactly that scope.
    """
    if not tenancy_installed():
        return lambda using=None: nullcontext()
    from better_tenant.context import get_context

    captured = get_context()

    def enter(using: str | None = None) -> AbstractContextManager[Any]:
        now = get_context()
        if captured.is_system:
            return nullcontext() if now.is_system else system_scope(using=using)
        if captured.tenant_id is None:
            return nullcontext()
        if not now.is_system and now.tenant_id == captured.tenant_id:
            return nullcontext()
        return narrowed_scope(captured.tenant_id, using=using)

    return enter


def _scope_allows(tenant_id: uuid.UUID | None) -> bool:
    from better_tenant.context import get_context

    context = get_context()
    return context.is_system or (tenant_id is not None and context.tenant_id == tenant_id)


def admin_scope(request: HttpRequest) -> AbstractContextManager[Any]:
    """The scope of an admin view: system mode for a superuser with better_tenant, else none.

    The Django admin has no tenant of its own; a staff user who is not a superuser stays in the
    scope the request already has (usually none, so tenant tables show no rows).
    """
    user = getattr(request, "user", None)
    if tenancy_installed() and getattr(user, "is_superuser", False):
        return system_scope()
    return nullcontext()


def render_in_scope(response: HttpResponse) -> HttpResponse:
    """Render a template response now, while the scope that produced it is still open."""
    # Templates evaluate querysets lazily; rendered after the scope closes they would see no rows.
    if isinstance(response, TemplateResponse) and not response.is_rendered:
        response.render()
    return response


if TYPE_CHECKING:
    from django.contrib.admin import ModelAdmin

    _AdminBase = ModelAdmin[Any]
else:
    # A mixin for ModelAdmin subclasses; at run time it derives from object only.
    _AdminBase = object


class TenantScopedAdminMixin(_AdminBase):
    """Every view of a ModelAdmin runs, and renders, inside ``view_scope(request)``.

    The default scope is ``admin_scope`` (system mode for superusers); override ``view_scope``
    for another one. Rendering happens inside the scope because templates read lazily.
    """

    def view_scope(self, request: HttpRequest) -> AbstractContextManager[Any]:
        return admin_scope(request)

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        with self.view_scope(request):
            return render_in_scope(super().changelist_view(request, extra_context))

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: Any = None,
    ) -> HttpResponse:
        with self.view_scope(request):
            return render_in_scope(
                super().changeform_view(request, object_id, form_url, extra_context)
            )

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: Any = None
    ) -> HttpResponse:
        with self.view_scope(request):
            return render_in_scope(super().delete_view(request, object_id, extra_context))

    def history_view(
        self, request: HttpRequest, object_id: str, extra_context: Any = None
    ) -> HttpResponse:
        with self.view_scope(request):
            return render_in_scope(super().history_view(request, object_id, extra_context))


def holding(marker: str, *, using: str | None = None) -> AbstractContextManager[Any]:
    """``better_tenant.holding(marker)`` where better_tenant is installed, else a no-op."""
    if not tenancy_installed():
        return nullcontext()
    from better_tenant.context import holding as hold

    return hold(marker, using=using)


def holds_sql(marker: str) -> str | None:
    """The policy condition for ``holding(marker)``, or None without better_tenant."""
    if not tenancy_installed():
        return None
    from better_tenant.sql import holds_sql as condition

    return condition(marker)
