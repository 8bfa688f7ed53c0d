"""Django admin of the example SaaS: every tenant's rows for superusers (system mode)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.http import HttpRequest

from better_tenant.shortcuts import TenantScopedAdminMixin
from example_project.projects.models import (
    Invite,
    Membership,
    Project,
    ReceivedWebhook,
    ReceiverInbox,
    Task,
)


class ScopedAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    """Runs each admin view in ``admin_scope``: system mode for superusers, no tenant otherwise.

    Tenant rows are written with an explicit tenant (system mode has no tenant to default to), so
    the tenant field is required in the forms.
    """

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any):
        form = super().get_form(request, obj, change=change, **kwargs)
        if "tenant" in form.base_fields:
            form.base_fields["tenant"].required = True
        return form


class TaskInlineFormSet(forms.BaseInlineFormSet):
    def save_new(self, form: Any, commit: bool = True) -> Any:
        # A task belongs to its project's tenant (the composite foreign key insists on it).
        form.instance.tenant_id = self.instance.tenant_id
        return super().save_new(form, commit)


class TaskInline(admin.TabularInline):
    model = Task
    formset = TaskInlineFormSet
    fields = ("title", "done", "completed_at", "created_at")
    readonly_fields = ("completed_at", "created_at")
    extra = 0


@admin.register(Project)
class ProjectAdmin(ScopedAdmin):
    list_display = ("name", "tenant", "created_at")
    list_filter = ("tenant",)
    search_fields = ("name",)
    readonly_fields = ("created_at",)
    inlines = [TaskInline]


class MembershipForm(forms.ModelForm):
    class Meta:
        model = Membership
        fields = ["tenant", "user", "role"]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        tenant, user = data.get("tenant"), data.get("user")
        duplicate = Membership.objects.filter(tenant=tenant, user=user).exclude(pk=self.instance.pk)
        if tenant and user and duplicate.exists():
            raise ValidationError(f"{user} is already a member of {tenant}.")
        return data


@admin.register(Membership)
class MembershipAdmin(ScopedAdmin):
    form = MembershipForm
    list_display = ("user", "tenant", "role", "created_at")
    list_filter = ("tenant", "role")
    search_fields = ("user__email",)
    list_select_related = ("user", "tenant")


@admin.register(Invite)
class InviteAdmin(ScopedAdmin):
    list_display = ("email", "tenant", "role", "invited_by", "created_at", "accepted_at")
    list_filter = ("tenant",)
    search_fields = ("email",)
    readonly_fields = ("invited_by", "created_at", "accepted_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Invites are made through POST /api/invites, which returns the token to send.
        return False


@admin.register(ReceiverInbox)
class ReceiverInboxAdmin(admin.ModelAdmin):
    list_display = ("slug", "created_at")
    fields = ("slug", "created_at")
    readonly_fields = ("slug", "created_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Inboxes are made with their endpoint's secret by `manage.py demo_data`.
        return False


@admin.register(ReceivedWebhook)
class ReceivedWebhookAdmin(admin.ModelAdmin):
    list_display = ("received_at", "inbox", "event", "webhook_id")
    list_filter = ("inbox", "event")
    search_fields = ("webhook_id",)
    readonly_fields = ("inbox", "webhook_id", "event", "data", "signature", "received_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
