"""Admin primitives shared by the better apps: bounded counts, read-only views, index scans."""

from __future__ import annotations

import contextlib
import json
from typing import Any, ClassVar

from django.contrib import admin
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet
from django.http import HttpRequest
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


class LargeTableAdminMixin:
    """The changelist of a table that grows without bound: no full COUNT, bounded pages.

    The paginator counts at most ``EXACT_COUNT_LIMIT`` rows and shows the planner's estimate
    above, and the "show all" link, which would count every row, is hidden.
    """

    list_per_page = 50
    show_full_result_count = False
    paginator: ClassVar[type[Paginator]] = EstimatedCountPaginator


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


def pretty_json(value: Any, css_class: str = "") -> SafeString:
    """``value`` as indented JSON in a ``<pre>`` (a JSON string is parsed first), or a dash."""
    if value in (None, "", {}, []):
        return format_html("{}", "—")
    text = value
    with contextlib.suppress(ValueError):
        parsed = json.loads(value) if isinstance(value, str) else value
        text = json.dumps(parsed, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    return format_html('<pre class="better-json {}">{}</pre>', css_class, text)


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
