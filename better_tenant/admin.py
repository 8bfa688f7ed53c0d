"""Django admin for tenants: every view runs in system mode, as the admin has no tenant."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest

from better_tenant.api import validate_slug
from better_tenant.context import run_as_system
from better_tenant.exceptions import InvalidTenantSlug
from better_tenant.models import Tenant
from better_tenant.shortcuts import TenantScopedAdminMixin


class TenantAdminForm(forms.ModelForm):
    """Tenant form that applies the same slug rule as ``better_tenant.api``."""

    class Meta:
        model = Tenant
        fields = ["name", "slug"]

    def clean_name(self) -> str:
        name = (self.cleaned_data.get("name") or "").strip()
        if not name:
            raise ValidationError("A tenant needs a non-empty name.", code="required")
        return name

    def clean_slug(self) -> str:
        slug = self.cleaned_data.get("slug") or ""
        try:
            return validate_slug(slug)
        except InvalidTenantSlug as exc:
            raise ValidationError(str(exc), code="invalid_slug") from exc


@admin.register(Tenant)
class TenantAdmin(TenantScopedAdminMixin, admin.ModelAdmin):
    form = TenantAdminForm
    list_display = ("name", "slug", "created_at")
    search_fields = ("name", "slug")
    ordering = ("created_at", "slug")
    prepopulated_fields = {"slug": ("name",)}
    readonly_fields = ("id", "created_at")
    fields = ("name", "slug", "id", "created_at")

    # Only the system role reads every row of tenants and only it may write them, so each view
    # runs inside run_as_system(); the admin's own permissions decide who reaches the views. Each
    # write (and the cascade it starts on tenant tables) also enters it, for callers other than
    # the views.

    def view_scope(self, request: HttpRequest) -> Any:
        return run_as_system()

    def save_model(self, request: HttpRequest, obj: Tenant, form: Any, change: bool) -> None:
        with run_as_system():
            super().save_model(request, obj, form, change)

    def delete_model(self, request: HttpRequest, obj: Tenant) -> None:
        with run_as_system():
            super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        with run_as_system():
            super().delete_queryset(request, queryset)

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        # Without system mode RLS hides the tenant rows the delete would cascade to.
        with run_as_system():
            return super().get_deleted_objects(objs, request)
