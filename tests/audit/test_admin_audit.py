"""The audit log admin: read-only, estimated counts, indexed filters and search, diff, dashboard."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from better_audit import admin as audit_admin
from better_audit.models import AuditLog
from better_core import admin as core_admin
from better_tenant import run_as_system
from tests.audit.test_query import NOW, add

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:better_audit_auditlog_changelist")
DASHBOARD = reverse("admin:better_audit_auditlog_dashboard")


@pytest.fixture
def trail(tenant, other_tenant):
    return {
        "update": add(
            table_name="users",
            operation="UPDATE",
            record_id="rec-7",
            actor_id="actor-1",
            severity="high",
            tenant_id=tenant.pk,
            before_data={"name": "Alice", "email": "a@example.com"},
            after_data={"name": "<script>alert(1)</script>", "email": "a@example.com"},
            diff={"changed_fields": ["name"]},
            label="Profile updated",
        ),
        "delete": add(
            table_name="orders",
            operation="DELETE",
            record_id="rec-8",
            actor_id="actor-2",
            severity="critical",
            tenant_id=other_tenant.pk,
            before_data={"total": 10},
            timestamp=NOW - timedelta(days=2),
        ),
        "insert": add(
            table_name="orders",
            record_id="rec-9",
            after_data={"total": 5},
            timestamp=NOW - timedelta(days=1),
        ),
    }


def change_url(entry: AuditLog) -> str:
    return reverse("admin:better_audit_auditlog_change", args=[entry.pk])


def listed(response) -> set[str]:
    return set(re.findall(r"rec-\d+", response.content.decode()))


def test_superuser_sees_every_tenants_entries(admin_client, trail):
    response = admin_client.get(CHANGELIST)
    assert response.status_code == 200
    assert listed(response) == {"rec-7", "rec-8", "rec-9"}
    assert "Dashboard" in response.content.decode()


def test_changelist_never_counts_the_whole_table(admin_client, trail):
    with CaptureQueriesContext(connection) as queries:
        assert admin_client.get(CHANGELIST).status_code == 200
        assert admin_client.get(CHANGELIST, {"operation__exact": "DELETE"}).status_code == 200
    counts = [q["sql"] for q in queries if "COUNT(" in q["sql"].upper()]
    assert counts, "the paginator still counts small results exactly"
    for sql in counts:
        # Every count is bounded (a LIMIT inside) or filtered (a WHERE); never a bare COUNT(*).
        assert "LIMIT" in sql.upper() or "WHERE" in sql.upper(), sql


def test_large_results_show_the_planner_estimate(monkeypatch, trail, rf, admin_user):
    monkeypatch.setattr(core_admin, "EXACT_COUNT_LIMIT", 1)
    monkeypatch.setattr(core_admin, "_table_estimate", lambda qs: 1_234_567)
    with run_as_system():
        paginator = core_admin.EstimatedCountPaginator(AuditLog.objects.order_by("-timestamp"), 50)
        assert paginator.count == 1_234_567
        filtered = AuditLog.objects.filter(table_name="orders").order_by("-timestamp")
        # The plan estimate (whatever it is) is used once the bounded count overflows.
        assert core_admin.EstimatedCountPaginator(filtered, 50).count >= 2


def test_filters_on_operation_severity_and_table(admin_client, trail):
    assert listed(admin_client.get(CHANGELIST, {"operation__exact": "DELETE"})) == {"rec-8"}
    assert listed(admin_client.get(CHANGELIST, {"severity__exact": "high"})) == {"rec-7"}
    by_table = admin_client.get(CHANGELIST, {"table_name": "orders"})
    assert listed(by_table) == {"rec-8", "rec-9"}
    page = by_table.content.decode()
    assert "?table_name=users" in page  # choices from the index skip scan


def test_search_matches_actor_or_record_exactly(admin_client, trail):
    assert listed(admin_client.get(CHANGELIST, {"q": "actor-2"})) == {"rec-8"}
    assert listed(admin_client.get(CHANGELIST, {"q": "rec-9"})) == {"rec-9"}
    assert listed(admin_client.get(CHANGELIST, {"q": "actor"})) == set()


def test_audited_tables_is_the_distinct_table_list(trail):
    with run_as_system():
        assert audit_admin.audited_tables() == ["orders", "users"]


def test_detail_shows_before_and_after_side_by_side_escaped(admin_client, trail):
    response = admin_client.get(change_url(trail["update"]))
    assert response.status_code == 200
    page = response.content.decode()
    assert '<table class="audit-changes">' in page
    row = re.search(r'<tr class="audit-changed"><th scope="row">name.*?</tr>', page, re.S)
    assert row and "Alice" in row.group(0)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>alert(1)</script>" not in page
    assert re.search(r'<tr class=""><th scope="row">email', page)
    # Read-only: no save buttons.
    assert 'name="_save"' not in page


def test_detail_of_an_insert_has_no_before(admin_client, trail):
    page = admin_client.get(change_url(trail["insert"])).content.decode()
    assert "audit-absent" in page and '<tr class="audit-changed">' not in page


def test_no_add_change_or_delete(admin_client, trail):
    assert admin_client.get(reverse("admin:better_audit_auditlog_add")).status_code == 403
    delete = reverse("admin:better_audit_auditlog_delete", args=[trail["insert"].pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    admin_client.post(change_url(trail["insert"]), {"label": "changed"})
    with run_as_system():
        assert AuditLog.objects.get(pk=trail["insert"].pk).label is None
        assert AuditLog.objects.count() == 3


def test_dashboard_renders_stats_and_an_inline_svg_chart(admin_client, trail):
    response = admin_client.get(DASHBOARD)
    assert response.status_code == 200
    page = response.content.decode()
    chart = re.search(r'<svg [^>]*class="audit-chart">.*?</svg>', page, re.S).group(0)
    assert "<rect" in chart and "<script" not in chart and "http" not in chart.split(">", 1)[1]
    assert 'class="audit-total">3<' in page
    assert "actor-1" in page and "?table_name=orders" in page


def test_dashboard_requires_the_view_permission(client, django_user_model):
    staff = django_user_model.objects.create_user("staff", password="pw", is_staff=True)
    client.force_login(staff)
    assert client.get(DASHBOARD).status_code == 403
    staff.user_permissions.add(Permission.objects.get(codename="view_auditlog"))
    assert client.get(DASHBOARD).status_code == 200


def test_staff_without_superuser_see_only_their_scope(client, django_user_model, trail):
    staff = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_auditlog"))
    client.force_login(staff)
    response = client.get(CHANGELIST)
    assert response.status_code == 200
    assert listed(response) == set()


def test_events_chart_escapes_and_scales():
    svg = str(
        audit_admin.events_chart(
            [{"date": "2025-01-01", "count": 0}, {"date": "2025-01-02", "count": 10}]
        )
    )
    assert svg.count("<rect") == 2 and 'height="150.0"' in svg and "10</text>" in svg
