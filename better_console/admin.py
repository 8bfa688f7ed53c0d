"""The Django admin as the visual console: a dashboard across the apps, sessions and magic links.

- ``/admin/better_console/dashboard/`` (URL name ``admin:better_console_dashboard``) shows the
  sections that the installed products register with ``better_console.dashboard`` (the tenant
  count, audit events per day as an SVG bar chart, the webhook delivery success rate and the mail
  counts per status), each linking to the product's changelist (filtered by status where one
  applies). It is listed in the admin index as Console > Dashboard. The figures span every
  tenant: console read access is the right to see them.
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
from typing import Any

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

from better_console.dashboard import KNOWN_SECTIONS, dashboard_data, sections
from better_console.dashboard import changelist_url as changelist_url
from better_console.models import ConsoleSession, MagicLink
from better_console.permissions import console_levels, has_console_level, require_console_level
from better_core.admin import ReadOnlyAdminMixin

APP_LABEL = "better_console"
DASHBOARD_URL_NAME = "better_console_dashboard"
DASHBOARD_DAYS = 30
# Set on a site once its dashboard is installed.
_INSTALLED = "_better_console_dashboard"

# --- the dashboard -------------------------------------------------------------------------------


def install_dashboard(site: AdminSite) -> None:
    """Serve the console dashboard on ``site`` and list it in the site's app list (idempotent)."""
    if getattr(site, _INSTALLED, False):
        return
    setattr(site, _INSTALLED, True)
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

    # Patched on this site instance only, which AdminSite's callers look the methods up on.
    site.get_urls = get_urls  # type: ignore[method-assign]
    site.get_app_list = get_app_list  # type: ignore[method-assign]


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
    """The console dashboard (needs console read): each registered section's templates."""
    require_console_level(request.user, "read")
    data = dashboard_data(DASHBOARD_DAYS)
    context: dict[str, Any] = {
        **site.each_context(request),
        "title": "Console dashboard",
        "data": data,
        "console_levels": console_levels(request.user),
        "console_app_url": _console_app_url(site),
    }
    # The suite's sections also under their keys, as templates overriding this page read them;
    # other keys stay out, so that a section cannot shadow a variable of the page.
    context.update(dict.fromkeys(KNOWN_SECTIONS))
    shown = []
    for section in sections():
        figures = data.get(section.key)
        if figures is None:
            continue
        section_context = section.context(site, request, figures)
        if section.key in KNOWN_SECTIONS:
            context[section.key] = section_context
        shown.append(
            {
                "key": section.key,
                "template": section.template,
                "wide_template": section.wide_template,
                "context": section_context,
            }
        )
    context["sections"] = shown
    return TemplateResponse(request, "admin/better_console/dashboard.html", context)


install_dashboard(admin.site)


# --- the console's own models --------------------------------------------------------------------


class ConsoleModelAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    class Media:
        css = {"all": ("better_console/admin.css",)}

    """Read-only; console read access is enough to see these pages."""

    list_per_page = 50
    show_full_result_count = False

    def has_module_permission(self, request: HttpRequest) -> bool:
        return super().has_module_permission(request) or has_console_level(request.user, "read")

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_view_permission(request, obj) or has_console_level(request.user, "read")

    @admin.display(description="state")
    def state(self, obj: Any) -> SafeString:
        label, tone = self._state(obj)
        return format_html('<strong class="console-{}">{}</strong>', tone, label)

    def _state(self, obj: Any) -> tuple[str, str]:
        """The state's label and tone (``good``, ``bad`` or ``plain``; better_console/admin.css)."""
        return ("expired", "bad") if obj.is_expired else ("active", "good")

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
            return "claimed", "good"
        if obj.is_expired:
            return "expired", "bad"
        return ("verified", "good") if obj.verified_at else ("waiting for code", "plain")
