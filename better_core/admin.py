"""Admin primitives shared by the better apps: bounded counts, tenant scope, loose index scans."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

from django.apps import apps
from django.contrib import admin
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.safestring import SafeString

EXACT_COUNT_LIMIT = 10_000


class EstimatedCountPaginator(Paginator):
    """Exact counts up to ``EXACT_COUNT_LIMIT`` rows, the planner's estimate above."""

    @cached_property
    def count(self) -> int:
        qs = self.object_list
        if not isinstance(qs, QuerySet):
            return len(qs)
        estimate = _plan_estimate(qs) if qs.query.where else _table_estimate(qs)
        if estimate > EXACT_COUNT_LIMIT:
            return estimate
        # Small (or never analyzed) results: a count that stops after EXACT_COUNT_LIMIT + 1 rows.
        exact = qs.order_by()[: EXACT_COUNT_LIMIT + 1].count()
        return exact if exact <= EXACT_COUNT_LIMIT else max(estimate, exact)


class ReadOnlyAdminMixin:
    """A ModelAdmin or inline that shows rows and never adds, changes or deletes them."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _table_estimate(qs: QuerySet) -> int:
    with connections[qs.db].cursor() as cursor:
        cursor.execute(
            "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(%s)",
            [qs.model._meta.db_table],
        )
        row = cursor.fetchone()
    # reltuples is -1 until the table is first analyzed.
    return int(row[0]) if row and row[0] is not None else -1


def _plan_estimate(qs: QuerySet) -> int:
    plan = json.loads(qs.order_by().explain(format="json"))
    return int(plan[0]["Plan"]["Plan Rows"])


@contextlib.contextmanager
def admin_scope(request: HttpRequest) -> Iterator[None]:
    """System mode for superusers when better_tenant is installed (the admin has no tenant)."""
    user = getattr(request, "user", None)
    if not apps.is_installed("better_tenant") or not getattr(user, "is_superuser", False):
        yield
        return
    from better_tenant.context import run_as_system

    with run_as_system():
        yield


def console_allows(user: Any, level: str) -> bool:
    """Whether ``user`` holds console ``level`` (read/write/admin); True without better_console."""
    if not apps.is_installed("better_console"):
        return True
    from better_console.permissions import has_console_level

    return has_console_level(user, level)


def pretty_json(value: Any, css_class: str = "") -> SafeString:
    """``value`` as indented JSON in a ``<pre>`` (a JSON string is parsed first), or a dash."""
    if value in (None, "", {}, []):
        return format_html("{}", "—")
    text = value
    with contextlib.suppress(ValueError):
        parsed = json.loads(value) if isinstance(value, str) else value
        text = json.dumps(parsed, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    return format_html(
        '<pre class="{}" style="margin: 0; white-space: pre-wrap">{}</pre>', css_class, text
    )


def render_in_scope(response: HttpResponse) -> HttpResponse:
    """Render a template response now, while the scope that produced it is still open."""
    # Templates evaluate querysets lazily; rendered after the scope closes they would see no rows.
    if isinstance(response, TemplateResponse) and not response.is_rendered:
        response.render()
    return response


class ScopedViewsMixin:
    """Every view of a ModelAdmin runs, and renders, inside ``view_scope(request)``.

    The default scope is ``admin_scope`` (system mode for superusers); override ``view_scope``
    for another one. Rendering happens inside the scope because templates read lazily.
    """

    def view_scope(self, request: HttpRequest) -> contextlib.AbstractContextManager[Any]:
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


def distinct_values(table: str, column: str, using: str = "default") -> list[str]:
    """Distinct non-null values of ``column``, by a loose scan of an index that leads with it."""
    connection = connections[using]
    table_sql = connection.ops.quote_name(table)
    column_sql = connection.ops.quote_name(column)
    # One index probe per distinct value instead of a DISTINCT over every row.
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            WITH RECURSIVE t(name) AS (
                (SELECT {column_sql} FROM {table_sql} ORDER BY {column_sql} LIMIT 1)
                UNION ALL
                SELECT (SELECT {column_sql} FROM {table_sql} WHERE {column_sql} > t.name
                        ORDER BY {column_sql} LIMIT 1)
                FROM t WHERE t.name IS NOT NULL
            )
            SELECT name FROM t WHERE name IS NOT NULL
            """
        )
        return [row[0] for row in cursor.fetchall()]


def distinct_value_filter(column: str) -> type[admin.SimpleListFilter]:
    """A list filter on the indexed ``column``, its choices found by ``distinct_values``."""

    class DistinctValueFilter(admin.SimpleListFilter):
        title = column
        parameter_name = column

        def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
            values = distinct_values(model_admin.model._meta.db_table, column)
            return [(value, value) for value in values]

        def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
            value = self.value()
            return queryset.filter(**{column: value}) if value else queryset

    return DistinctValueFilter
