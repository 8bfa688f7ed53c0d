"""The Django admin as the visual console: a dashboard across the apps, sessions and magic links.

- ``/admin/better_console/dashboard/`` (URL name ``admin:better_console_dashboard``) shows the
  tenant count, audit events per day as an SVG bar chart, the webhook delivery success rate and
  the mail counts per status, each linking to the app's changelist (filtered by status where one
  applies). Each section appears only when its app is installed. It is listed in the admin index
  as Console > Dashboard. The figures span every tenant: console read access is the right to
  see them.
- It is added to the default ``admin.site`` when the admin loads this module; a project with its
  own ``AdminSite`` calls ``install_dashboard(its_site)`` once (in its ``admin.py``).
- Console levels come from ``better_console.permissions``: superusers hold read, write and admin;
  other staff the highest of the ``console_read`` / ``console_write`` / ``console_admin``
  permissions they hold. The dashboard needs read; the "Revoke" action on sessions needs admin.
- Sessions and magic links are read-only (their token and code hashes are never shown, and their
  sessionId only by its start: whoever holds it can claim a verified link). Revoking
  a session ends it now: its ``expires_at`` is set to the present, so its token stops verifying
  and a repeated claim cannot revive it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from django.apps import apps
from django.contrib import admin, messages
from django.contrib.admin import AdminSite
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from better_console.models import ConsoleSession, MagicLink
from better_console.permissions import console_levels, has_console_level, require_console_level
from better_core.admin import ReadOnlyAdminMixin

APP_LABEL = "better_console"
DASHBOARD_URL_NAME = "better_console_dashboard"
DASHBOARD_DAYS = 30

# --- the dashboard -------------------------------------------------------------------------------


def install_dashboard(site: AdminSite) -> None:
    """Serve the console dashboard on ``site`` and list it in the site's app list (idempotent)."""
    if getattr(site, "_better_console_dashboard", False):
        return
    site._better_console_dashboard = True
    site_urls = site.get_urls
    site_app_list = site.get_app_list

    def get_urls() -> list[Any]:
        view = site.admin_view(functools.partial(dashboard_view, site=site))
        dashboard = path(f"{APP_LABEL}/dashboard/", view, name=DASHBOARD_URL_NAME)
        # First, so that the app index pattern and the final catch-all never shadow it.
        return [dashboard, *site_urls()]

    def get_app_list(request: HttpRequest, app_label: str | None = None) -> list[dict[str, Any]]:
        app_list = site_app_list(request, app_label)
        if app_label not in (None, APP_LABEL) or not has_console_level(request.user, "read"):
            return app_list
        return _with_dashboard_entry(site, app_list)

    site.get_urls = get_urls
    site.get_app_list = get_app_list


def _with_dashboard_entry(site: AdminSite, app_list: list[dict[str, Any]]) -> list[dict[str, Any]]:
    entry = {
        "model": None,
        "name": "Dashboard",
        "object_name": "ConsoleDashboard",
        "perms": {"add": False, "change": False, "delete": False, "view": True},
        "admin_url": reverse(f"{site.name}:{DASHBOARD_URL_NAME}"),
        "add_url": None,
        "view_only": True,
    }
    for app in app_list:
        if app["app_label"] == APP_LABEL:
            app["models"] = [entry, *app["models"]]
            return app_list
    # A user with console access but no right on the console's own models still gets the entry.
    app = {
        "name": apps.get_app_config(APP_LABEL).verbose_name,
        "app_label": APP_LABEL,
        "app_url": _console_app_url(site) or entry["admin_url"],
        "has_module_perms": True,
        "models": [entry],
    }
    return sorted([*app_list, app], key=lambda item: item["name"].lower())


def _console_app_url(site: AdminSite) -> str | None:
    try:
        return reverse(f"{site.name}:app_list", kwargs={"app_label": APP_LABEL})
    except NoReverseMatch:
        return None


def dashboard_view(request: HttpRequest, site: AdminSite) -> HttpResponse:
    """The console dashboard (needs console read)."""
    from better_console.dashboard import dashboard_data

    require_console_level(request.user, "read")
    data = dashboard_data(DASHBOARD_DAYS)
    context = {
        **site.each_context(request),
        "title": "Console dashboard",
        "data": data,
        "console_levels": console_levels(request.user),
        "console_app_url": _console_app_url(site),
        "tenants": _tenants_section(site, request, data["tenants"]),
        "audit": _audit_section(site, request, data["audit"]),
        "webhooks": _webhooks_section(site, request, data["webhooks"]),
        "mail": _mail_section(site, request, data["mail"]),
    }
    return TemplateResponse(request, "admin/better_console/dashboard.html", context)


def changelist_url(
    site: AdminSite, request: HttpRequest, model_label: str, **query: str
) -> str | None:
    """The model's changelist on ``site`` with ``query``, or None when the user may not see it."""
    try:
        model = apps.get_model(model_label)
    except LookupError:
        return None
    model_admin = site._registry.get(model)
    if model_admin is None or not model_admin.has_view_permission(request):
        return None
    opts = model._meta
    url = reverse(f"{site.name}:{opts.app_label}_{opts.model_name}_changelist")
    return f"{url}?{urlencode(query)}" if query else url


def _status_rows(
    site: AdminSite,
    request: HttpRequest,
    model: str,
    counts: dict[str, int],
    label: Callable[[str], str] = str.capitalize,
) -> list[dict[str, Any]]:
    """One row per status: its label, its count and the changelist filtered to it."""
    return [
        {
            "key": status,
            "label": label(status),
            "count": count,
            "url": changelist_url(site, request, model, status__exact=status),
        }
        for status, count in counts.items()
    ]


def _tenants_section(
    site: AdminSite, request: HttpRequest, data: dict[str, Any] | None
) -> dict[str, Any] | None:
    if data is None:
        return None
    return {**data, "url": changelist_url(site, request, "better_tenant.Tenant")}


def _audit_section(
    site: AdminSite, request: HttpRequest, data: dict[str, Any] | None
) -> dict[str, Any] | None:
    if data is None:
        return None
    from better_audit.admin import events_chart

    url = changelist_url(site, request, "better_audit.AuditLog")
    dashboard_url = None
    if url is not None:
        try:
            dashboard_url = reverse(f"{site.name}:better_audit_auditlog_dashboard")
        except NoReverseMatch:
            dashboard_url = None
    return {
        **data,
        "url": url,
        "dashboard_url": dashboard_url,
        "chart": events_chart(data["per_day"]),
    }


def _webhooks_section(
    site: AdminSite, request: HttpRequest, data: dict[str, Any] | None
) -> dict[str, Any] | None:
    if data is None:
        return None
    deliveries = "better_webhooks.WebhookDelivery"
    endpoints = "better_webhooks.WebhookEndpoint"
    rate = data["success_rate"]
    return {
        **data,
        "delivered": data["statuses"]["delivered"],
        "success_rate_display": None if rate is None else f"{rate:.1%}",
        "url": changelist_url(site, request, deliveries),
        "rows": _status_rows(site, request, deliveries, data["statuses"]),
        "endpoints_url": changelist_url(site, request, endpoints),
        "endpoint_rows": _status_rows(site, request, endpoints, data["endpoints"]),
    }


def _mail_section(
    site: AdminSite, request: HttpRequest, data: dict[str, Any] | None
) -> dict[str, Any] | None:
    if data is None:
        return None
    from better_mail.models import MailStatus

    logs = "better_mail.MailLog"
    return {
        **data,
        "url": changelist_url(site, request, logs),
        "rows": _status_rows(
            site, request, logs, data["statuses"], lambda status: MailStatus(status).label
        ),
    }


install_dashboard(admin.site)


# --- the console's own models --------------------------------------------------------------------


class ConsoleModelAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Read-only; console read access is enough to see these pages."""

    list_per_page = 50
    show_full_result_count = False

    def has_module_permission(self, request: HttpRequest) -> bool:
        return super().has_module_permission(request) or has_console_level(request.user, "read")

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_view_permission(request, obj) or has_console_level(request.user, "read")

    @admin.display(description="state")
    def state(self, obj: Any) -> SafeString:
        label, colour = self._state(obj)
        return format_html('<strong style="color: {}">{}</strong>', colour, label)

    def _state(self, obj: Any) -> tuple[str, str]:
        return ("expired", "#ba2121") if obj.is_expired else ("active", "#2e7d32")

    @admin.display(description="session id")
    def session_ref(self, obj: Any) -> str:
        return obj.session_ref


@admin.register(ConsoleSession)
class ConsoleSessionAdmin(ConsoleModelAdmin):
    list_display = ("email", "session_ref", "state", "permission_list", "created_at", "expires_at")
    list_display_links = ("email",)
    search_fields = ("=email", "=session_id")
    search_help_text = "Exact email or full session id."
    ordering = ("-created_at",)
    fields = ("id", "session_ref", "email", "permissions", "state", "created_at", "expires_at")
    readonly_fields = fields
    actions = ("revoke_sessions",)

    @admin.display(description="permissions")
    def permission_list(self, obj: ConsoleSession) -> str:
        return ", ".join(obj.permissions)

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return has_console_level(request.user, "admin")

    @admin.action(description="Revoke the selected sessions", permissions=["revoke"])
    def revoke_sessions(self, request: HttpRequest, queryset: QuerySet) -> None:
        # Expired rather than deleted: the row stays as a record until purged, and a repeated
        # claim of the same magic link finds it expired instead of issuing the token again.
        now = timezone.now()
        count = queryset.filter(expires_at__gt=now).update(expires_at=now)
        noun = "session" if count == 1 else "sessions"
        self.message_user(request, f"Revoked {count} {noun}.", messages.SUCCESS)


@admin.register(MagicLink)
class MagicLinkAdmin(ConsoleModelAdmin):
    list_display = (
        "email",
        "session_ref",
        "state",
        "failed_attempts",
        "verified_at",
        "claimed_at",
        "created_at",
        "expires_at",
    )
    list_display_links = ("email",)
    search_fields = ("=email", "=session_id")
    search_help_text = "Exact email or full session id."
    ordering = ("-created_at",)
    fields = (
        "id",
        "session_ref",
        "email",
        "state",
        "failed_attempts",
        "verified_at",
        "claimed_at",
        "created_at",
        "expires_at",
    )
    readonly_fields = fields
    actions = None

    def _state(self, obj: MagicLink) -> tuple[str, str]:
        if obj.claimed_at:
            return "claimed", "#2e7d32"
        if obj.is_expired:
            return "expired", "#ba2121"
        return ("verified", "#2e7d32") if obj.verified_at else ("waiting for code", "inherit")
