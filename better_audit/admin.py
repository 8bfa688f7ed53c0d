"""Read-only Django admin of the audit log, built to stay fast at millions of rows.

- No full COUNT: the paginator counts at most ``EXACT_COUNT_LIMIT`` rows and beyond that shows the
  planner's estimate (``pg_class.reltuples`` unfiltered, the EXPLAIN row estimate filtered).
- Filters only on operation, severity and table (the table choices come from a skip scan of the
  ``(table_name, record_id)`` index, never a DISTINCT over the table); no date hierarchy; sorting
  only by timestamp.
- Search matches an actor id or a record id exactly, so both are index lookups.
- The detail page shows before and after side by side, changed fields highlighted.
- A dashboard (``dashboard/``) with ``audit.stats()`` and a server-rendered SVG chart.

With better_tenant installed the trail is under row-level security; superusers see every tenant's
entries (the views run in ``run_as_system()``), other staff see what their current scope allows.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import flatten_fieldsets
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from better_audit.models import AuditLog
from better_core.admin import (
    LargeTableAdminMixin,
    ReadOnlyAdminMixin,
    distinct_values,
    pretty_json,
)
from better_tenant.shortcuts import TenantScopedAdminMixin, admin_scope, render_in_scope

DASHBOARD_DAYS = 30
_MISSING = object()


def audited_tables(using: str = "default") -> list[str]:
    """Distinct table names by a loose index scan of ``audit_logs_record_idx``."""
    return distinct_values(AuditLog._meta.db_table, "table_name", using)


class TableFilter(admin.SimpleListFilter):
    title = "table"
    parameter_name = "table_name"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(name, name) for name in audited_tables()]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        return queryset.filter(table_name=value) if value else queryset


@admin.register(AuditLog)
class AuditLogAdmin(
    TenantScopedAdminMixin, LargeTableAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin
):
    class Media:
        # Rules of the JSON blocks and statuses the pages show (no inline style attributes).
        css = {"all": ("better_audit/admin.css",)}

    list_display = (
        "timestamp",
        "operation",
        "table_name",
        "record_id",
        "actor_id",
        "severity",
        "label",
    )
    list_display_links = ("timestamp",)
    list_filter = ("operation", "severity", TableFilter)
    search_fields = ("actor_id", "record_id")
    search_help_text = "Exact actor id or record id."
    sortable_by = ("timestamp",)
    ordering = ("-timestamp", "-id")
    list_max_show_all = 0
    actions = None
    date_hierarchy = None
    change_list_template = "admin/better_audit/auditlog/change_list.html"
    change_form_template = "admin/better_audit/auditlog/change_form.html"
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "timestamp",
                    "operation",
                    "table_name",
                    "record_id",
                    "actor_id",
                    "tenant_id",
                    "correlation_id",
                )
            },
        ),
        ("Changes", {"fields": ("changes",)}),
        (
            "Enrichment",
            {
                "fields": (
                    "label",
                    "description",
                    "severity",
                    "compliance",
                    "notify",
                    "reason",
                    "redacted_fields",
                    "metadata_json",
                )
            },
        ),
    )

    # --- read only -------------------------------------------------------------------------------

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return flatten_fieldsets(self.fieldsets)

    # --- search ----------------------------------------------------------------------------------

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        # record_id is the second column of (table_name, record_id): naming every table lets
        # PostgreSQL use that index for a record id searched on its own.
        tables = audited_tables(queryset.db)
        condition = Q(actor_id=term) | Q(table_name__in=tables, record_id=term)
        return queryset.filter(condition), False

    # --- views in the admin's scope --------------------------------------------------------------

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        extra_context = {**(extra_context or {}), "dashboard_url": self._dashboard_url()}
        return super().changelist_view(request, extra_context)

    def get_urls(self) -> list[Any]:
        info = (self.opts.app_label, self.opts.model_name)
        custom = [
            path(
                "dashboard/",
                self.admin_site.admin_view(self.dashboard_view),
                name="{}_{}_dashboard".format(*info),
            )
        ]
        return custom + super().get_urls()

    def _dashboard_url(self) -> str:
        return reverse(
            f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_dashboard"
        )

    def dashboard_view(self, request: HttpRequest) -> HttpResponse:
        from django.core.exceptions import PermissionDenied

        from better_audit.statistics import stats

        if not self.has_view_permission(request):
            raise PermissionDenied
        with admin_scope(request):
            report = stats(days=DASHBOARD_DAYS, top=10)
            context = {
                **self.admin_site.each_context(request),
                "title": "Audit dashboard",
                "opts": self.opts,
                "stats": report,
                "chart": events_chart(report["events_per_day"]),
                "changelist_url": reverse(
                    f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}"
                    "_changelist"
                ),
            }
            return render_in_scope(
                TemplateResponse(request, "admin/better_audit/auditlog/dashboard.html", context)
            )

    # --- detail rendering ------------------------------------------------------------------------

    @admin.display(description="Before / after")
    def changes(self, obj: AuditLog) -> SafeString:
        return changes_table(obj)

    @admin.display(description="Metadata")
    def metadata_json(self, obj: AuditLog) -> SafeString:
        return pretty_json(obj.metadata, "audit-json")


def _cell(value: Any, present: bool) -> SafeString:
    if not present:
        return format_html('<span class="audit-absent">{}</span>', "—")
    if isinstance(value, (dict, list)) and value:
        return pretty_json(value, "audit-json")
    return format_html("<code>{}</code>", json.dumps(value, default=str))


def changes_table(obj: AuditLog) -> SafeString:
    """Before and after side by side, one row per column; changed rows highlighted."""
    before = obj.before_data if isinstance(obj.before_data, dict) else None
    after = obj.after_data if isinstance(obj.after_data, dict) else None
    if before is None and after is None:
        return format_html("{}", "No row data was recorded.")
    keys = list(dict.fromkeys([*(before or {}), *(after or {})]))
    diff = obj.diff if isinstance(obj.diff, dict) else {}
    changed = set(diff.get("changed_fields") or ())
    if before is not None and after is not None:
        changed |= {k for k in keys if before.get(k, _MISSING) != after.get(k, _MISSING)}
    rows = []
    for key in keys:
        is_changed = key in changed and before is not None and after is not None
        rows.append(
            (
                "audit-changed" if is_changed else "",
                key,
                "changed" if is_changed else "",
                _cell((before or {}).get(key), before is not None and key in before),
                _cell((after or {}).get(key), after is not None and key in after),
            )
        )
    body = format_html_join(
        "\n",
        '<tr class="{}"><th scope="row">{} <small>{}</small></th><td>{}</td><td>{}</td></tr>',
        rows,
    )
    return format_html(
        '<table class="audit-changes"><thead><tr><th scope="col">Field</th>'
        '<th scope="col">Before</th><th scope="col">After</th></tr></thead>'
        "<tbody>{}</tbody></table>",
        body,
    )


def events_chart(days: list[dict[str, Any]], width: int = 720, height: int = 180) -> SafeString:
    """An inline SVG bar chart of events per day (no script, no external assets)."""
    if not days:
        return format_html("{}", "No events.")
    pad_left, pad_bottom, pad_top = 40, 20, 10
    plot_w, plot_h = width - pad_left - 5, height - pad_bottom - pad_top
    peak = max(day["count"] for day in days) or 1
    step = plot_w / len(days)
    bar_w = max(step * 0.8, 1.0)
    bars = []
    for index, day in enumerate(days):
        h = day["count"] / peak * plot_h
        x = pad_left + index * step
        y = pad_top + plot_h - h
        bars.append(
            format_html(
                '<rect x="{}" y="{}" width="{}" height="{}" class="audit-bar">'
                "<title>{}: {}</title></rect>",
                f"{x:.1f}",
                f"{y:.1f}",
                f"{bar_w:.1f}",
                f"{h:.1f}",
                day["date"],
                f"{day['count']:,}",
            )
        )
    labels = [
        format_html(
            '<text x="{}" y="{}" text-anchor="end" class="audit-axis">{}</text>',
            pad_left - 4,
            pad_top + 4,
            f"{peak:,}",
        ),
        format_html(
            '<text x="{}" y="{}" text-anchor="end" class="audit-axis">0</text>',
            pad_left - 4,
            pad_top + plot_h,
        ),
        format_html(
            '<text x="{}" y="{}" class="audit-axis">{}</text>',
            pad_left,
            height - 4,
            days[0]["date"],
        ),
        format_html(
            '<text x="{}" y="{}" text-anchor="end" class="audit-axis">{}</text>',
            width - 5,
            height - 4,
            days[-1]["date"],
        ),
    ]
    return format_html(
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {} {}" width="100%" role="img" '
        'aria-label="{}" class="audit-chart">'
        '<line x1="{}" y1="{}" x2="{}" y2="{}" class="audit-axis-line"/>{}{}</svg>',
        width,
        height,
        f"Audit events per day, {days[0]['date']} to {days[-1]['date']}",
        pad_left,
        pad_top + plot_h,
        width - 5,
        pad_top + plot_h,
        mark_safe("".join(bars)),  # parts built with format_html
        mark_safe("".join(labels)),  # parts built with format_html
    )
