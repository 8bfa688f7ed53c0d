"""Django admin of webhooks: endpoints (never their secrets), the delivery log and its attempts.

The delivery log stays fast on large tables: no full COUNT (the paginator counts at most
``EXACT_COUNT_LIMIT`` rows and shows the planner's estimate beyond), filters only on indexed
columns (status; event names from a loose scan of the ``(event, created_at)`` index), search by
exact message or delivery id, sorting only by creation time. Deliveries and attempts are
read-only; the "replay" action queues selected deliveries again.

With better_tenant installed the tables are under row-level security: superusers see every
tenant's rows (the views run in ``run_as_system()``), other staff see what their scope allows.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils.safestring import SafeString

from better_console.shortcuts import console_allows
from better_core.admin import (
    LargeTableAdminMixin,
    ReadOnlyAdminMixin,
    distinct_value_filter,
    distinct_values,
    pretty_json,
)
from better_tenant.shortcuts import TenantScopedAdminMixin
from better_webhooks.models import WebhookDelivery, WebhookDeliveryAttempt, WebhookEndpoint

# --- endpoints ---------------------------------------------------------------------------------


class EndpointForm(forms.ModelForm):
    """The editable fields of an endpoint, checked as the API checks them."""

    class Meta:
        model = WebhookEndpoint
        fields = ["url", "events", "description", "metadata"]

    def clean_url(self) -> str:
        from better_webhooks.exceptions import UnsafeURLError
        from better_webhooks.ssrf import validate_url

        url = self.cleaned_data["url"].strip()
        try:
            validate_url(url)
        except UnsafeURLError as exc:
            raise forms.ValidationError(str(exc)) from exc
        return url

    def clean_events(self) -> list[str]:
        from better_webhooks.endpoints import validate_events
        from better_webhooks.exceptions import UnknownEventError

        try:
            return validate_events(self.cleaned_data["events"])
        except UnknownEventError as exc:
            raise forms.ValidationError(str(exc)) from exc


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    class Media:
        # Rules of the JSON blocks and statuses the pages show (no inline style attributes).
        css = {"all": ("better_webhooks/admin.css",)}

    form = EndpointForm
    list_display = (
        "url",
        "status",
        "event_list",
        "tenant_id",
        "consecutive_failures",
        "created_at",
    )
    list_filter = ("status",)
    search_fields = ("url", "description")
    ordering = ("-created_at",)
    list_per_page = 50
    show_full_result_count = False
    readonly_fields = (
        "id",
        "status",
        "disabled_reason",
        "disabled_at",
        "consecutive_failures",
        "failing_since",
        "tenant_id",
        "created_at",
        "updated_at",
    )
    fieldsets = (
        (None, {"fields": ("id", "url", "events", "description", "metadata")}),
        (
            "Status",
            {
                "fields": (
                    "status",
                    "disabled_reason",
                    "disabled_at",
                    "consecutive_failures",
                    "failing_since",
                )
            },
        ),
        ("Ownership", {"fields": ("tenant_id", "created_at", "updated_at")}),
    )
    actions = ("enable_endpoints", "disable_endpoints")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The signing secret is shown once, to whoever creates the endpoint: through the API or
        # better_webhooks.endpoints.create_endpoint(), never in an admin page.
        return False

    @admin.display(description="events")
    def event_list(self, obj: WebhookEndpoint) -> str:
        return ", ".join(obj.events)

    @admin.action(description="Enable selected endpoints", permissions=["change"])
    def enable_endpoints(self, request: HttpRequest, queryset: QuerySet) -> None:
        from better_webhooks.endpoints import enable_endpoint

        count = 0
        for endpoint in queryset.filter(status="disabled"):
            enable_endpoint(endpoint)
            count += 1
        self.message_user(request, f"Enabled {count} endpoint(s).", messages.SUCCESS)

    @admin.action(description="Disable selected endpoints", permissions=["change"])
    def disable_endpoints(self, request: HttpRequest, queryset: QuerySet) -> None:
        from better_webhooks.endpoints import disable_endpoint

        count = 0
        reason = f"disabled in the admin by {request.user.get_username()}"
        for endpoint in queryset.filter(status="active"):
            disable_endpoint(endpoint, reason=reason)
            count += 1
        self.message_user(request, f"Disabled {count} endpoint(s).", messages.SUCCESS)


# --- deliveries --------------------------------------------------------------------------------


def delivered_events(using: str = "default") -> list[str]:
    """Distinct event names by a loose index scan of ``webhook_deliveries_event_idx``."""
    return distinct_values(WebhookDelivery._meta.db_table, "event", using)


class AttemptInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = WebhookDeliveryAttempt
    fields = ("attempt", "created_at", "response_status", "duration_ms", "error", "url")
    readonly_fields = fields
    ordering = ("attempt",)
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = True


class ReadOnlyAdmin(
    TenantScopedAdminMixin, LargeTableAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin
):
    """A scoped admin that only shows rows."""

    class Media:
        # Rules of the JSON blocks and statuses the pages show (no inline style attributes).
        css = {"all": ("better_webhooks/admin.css",)}


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "event",
        "status",
        "endpoint_url",
        "attempts",
        "last_status_code",
        "next_attempt_at",
        "tenant_id",
    )
    list_display_links = ("created_at",)
    list_filter = ("status", distinct_value_filter("event"))
    list_select_related = ("endpoint",)
    search_fields = ("message_id", "id")
    search_help_text = "Exact message id (msg_...) or delivery id."
    sortable_by = ("created_at",)
    ordering = ("-created_at", "-id")
    list_max_show_all = 0
    date_hierarchy = None
    inlines = (AttemptInline,)
    actions = ("replay",)
    fields = (
        "id",
        "message_id",
        "endpoint",
        "event",
        "status",
        "attempts",
        "max_attempts",
        "abandoned_claims",
        "next_attempt_at",
        "last_status_code",
        "last_error",
        "delivered_at",
        "locked_by",
        "lease_until",
        "idempotency_key",
        "tenant_id",
        "created_at",
        "updated_at",
        "payload_json",
    )
    readonly_fields = fields

    @admin.display(description="endpoint")
    def endpoint_url(self, obj: WebhookDelivery) -> str:
        return obj.endpoint.url

    @admin.display(description="payload")
    def payload_json(self, obj: WebhookDelivery) -> SafeString:
        return pretty_json(obj.payload, "webhook-body")

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        # Exact matches only, so that both are index lookups.
        condition = Q(message_id=term)
        with contextlib.suppress(ValueError):
            condition |= Q(pk=uuid.UUID(term))
        return queryset.filter(condition), False

    def has_replay_permission(self, request: HttpRequest) -> bool:
        # Replaying sends data out again: the change permission, and console write access.
        opts = self.opts
        may_change = request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")
        return may_change and console_allows(request.user, "write")

    @admin.action(description="Replay selected deliveries", permissions=["replay"])
    def replay(self, request: HttpRequest, queryset: QuerySet) -> None:
        from better_webhooks.replay import replay

        selected = list(queryset.values_list("pk", flat=True))
        count = replay(selected)
        skipped = len(selected) - count
        text = f"Queued {count} deliver{'y' if count == 1 else 'ies'} again."
        if skipped:
            text += f" {skipped} pending or in delivery were left as they are."
        self.message_user(request, text, messages.SUCCESS)


@admin.register(WebhookDeliveryAttempt)
class WebhookDeliveryAttemptAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "delivery_id", "attempt", "response_status", "duration_ms", "url")
    list_display_links = ("created_at",)
    sortable_by = ("created_at",)
    ordering = ("-created_at",)
    list_max_show_all = 0
    search_fields = ("delivery__id",)
    search_help_text = "Exact delivery id."
    fields = (
        "id",
        "delivery",
        "attempt",
        "url",
        "response_status",
        "duration_ms",
        "error",
        "tenant_id",
        "created_at",
        "request_headers_json",
        "request_body_json",
        "response_headers_json",
        "response_body_json",
    )
    readonly_fields = fields

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        try:
            delivery_id = uuid.UUID(search_term.strip())
        except ValueError:
            return (queryset.none(), False) if search_term.strip() else (queryset, False)
        return queryset.filter(delivery_id=delivery_id), False

    @admin.display(description="request headers")
    def request_headers_json(self, obj: WebhookDeliveryAttempt) -> SafeString:
        return pretty_json(obj.request_headers, "webhook-body")

    @admin.display(description="request body")
    def request_body_json(self, obj: WebhookDeliveryAttempt) -> SafeString:
        return pretty_json(obj.request_body, "webhook-body")

    @admin.display(description="response headers")
    def response_headers_json(self, obj: WebhookDeliveryAttempt) -> SafeString:
        return pretty_json(obj.response_headers, "webhook-body")

    @admin.display(description="response body")
    def response_body_json(self, obj: WebhookDeliveryAttempt) -> SafeString:
        return pretty_json(obj.response_body, "webhook-body")
