"""better_audit alone: capture, the append-only trail, its commands, checks and admin pages."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.apps import apps
from django.core import checks
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.urls import reverse
from django.utils import timezone

import better_audit as audit
from better_audit.models import AuditLog
from better_tenant.shortcuts import tenancy_installed
from tests.projects.audit_only.models import Order
from tests.support.audit import add_rows

pytestmark = pytest.mark.django_db

TABLE = "audit_only_orders"


def entries(**filters) -> list[AuditLog]:
    # No row-level security on the trail without better_tenant: the app role reads every row.
    return list(AuditLog.objects.filter(**filters).order_by("timestamp"))


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("better_audit", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_only_better_audit_of_the_apps_is_installed():
    names = ("tenant", "audit", "console", "webhooks", "mail")
    assert {name for name in names if apps.is_installed(f"better_{name}")} == {"audit"}
    assert tenancy_installed() is False


def test_save_and_delete_are_captured_with_no_tenant():
    with audit.audit_context(actor_id="ops-1"):
        order = Order.objects.create(number="A-1", total=5)
        order.total = 7
        order.save()
        order.delete()
    insert, update, delete = entries(table_name=TABLE)
    assert [e.operation for e in (insert, update, delete)] == ["INSERT", "UPDATE", "DELETE"]
    assert update.record_id == delete.record_id == insert.record_id
    assert insert.after_data == {"id": int(insert.record_id), "number": "A-1", "total": 5}
    assert (update.before_data["total"], update.after_data["total"]) == (5, 7)
    assert update.diff == {"changed_fields": ["total"]}
    assert delete.before_data["total"] == 7 and delete.after_data is None
    assert {(e.tenant_id, e.actor_id) for e in (insert, update, delete)} == {(None, "ops-1")}


def test_a_rolled_back_write_leaves_no_entry():
    with pytest.raises(RuntimeError), transaction.atomic():
        Order.objects.create(number="gone")
        raise RuntimeError
    assert entries(table_name=TABLE) == []


@pytest.fixture
def eager_celery() -> Iterator[None]:
    """Celery tasks run in this process; their body is what a worker runs."""
    from celery import current_app

    saved = current_app.conf.task_always_eager
    current_app.conf.task_always_eager = True
    yield
    current_app.conf.task_always_eager = saved


def test_async_write_inserts_the_entries_after_commit(
    settings, eager_celery, django_capture_on_commit_callbacks
):
    settings.BETTER_AUDIT = {**settings.BETTER_AUDIT, "ASYNC_WRITE": True}
    with django_capture_on_commit_callbacks(execute=True):
        Order.objects.create(number="A-1")
        assert entries() == []
    [entry] = entries(table_name=TABLE)
    assert (entry.operation, entry.tenant_id, entry.after_data["number"]) == ("INSERT", None, "A-1")


def test_the_trail_has_no_tenant_policies_but_stays_append_only():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT policyname, cmd, qual FROM pg_policies WHERE tablename = 'audit_logs' "
            "AND policyname NOT LIKE 'rls_audit_admin%%' AND policyname <> 'test_fixture_rows' "
            "ORDER BY 1"
        )
        # Row-level security without tenants: everyone reads, only the owner's functions insert.
        assert cursor.fetchall() == [
            ("rls_audit_read", "SELECT", "true"),
            ("rls_audit_writer", "INSERT", None),
        ]
    Order.objects.create(number="A-1")
    # The app role may read entries, never write, change or remove them.
    for change in (
        lambda: AuditLog.objects.create(table_name=TABLE, operation="INSERT", record_id="9"),
        lambda: AuditLog.objects.update(actor_id="forged"),
        lambda: AuditLog.objects.all().delete(),
    ):
        with pytest.raises(DatabaseError), transaction.atomic():
            change()
    assert [e.actor_id for e in entries()] == [None]


def test_the_middleware_records_the_signed_in_user(admin_client, admin_user):
    response = admin_client.post("/orders/", {"number": "W-1"})
    assert response.status_code == 201
    [entry] = entries(table_name=TABLE)
    assert entry.actor_id == str(admin_user.pk)
    assert entry.tenant_id is None and entry.after_data["number"] == "W-1"


def test_stats_export_and_verify_commands():
    for number in ("A-1", "A-2"):
        Order.objects.create(number=number)

    out, _ = run("stats", "--json")
    report = json.loads(out)
    assert report["total_logs"] == 2
    assert report["operation_breakdown"] == {"INSERT": 2, "UPDATE": 0, "DELETE": 0}

    out, err = run("export", "--format", "json")
    exported = json.loads(out)
    assert [row["after_data"]["number"] for row in exported[:-1]] == ["A-1", "A-2"]
    assert {row["tenant_id"] for row in exported[:-1]} == {None}
    assert "_chain_head" in exported[-1]
    assert err.startswith("Exported 2 audit entries")

    out, _ = run("verify")
    assert "2 entries verified" in out


def test_purge_deletes_only_entries_older_than_the_cutoff():
    old = timezone.now() - timedelta(days=100)
    add_rows(
        AuditLog(timestamp=old, table_name=TABLE, operation="INSERT", record_id="1"),
        AuditLog(table_name=TABLE, operation="INSERT", record_id="2"),
    )
    out, _ = run("purge", "--since", "30d", "--dry-run")
    assert out.startswith("1 audit entries older than")
    out, _ = run("purge", "--since", "30d", "--yes")
    assert "Deleted 1 audit entries" in out
    assert [e.record_id for e in entries()] == ["2"]


def test_the_check_command_passes():
    out, _ = run("check")
    assert "checks passed" in out and "✗" not in out


def test_system_checks_pass_with_no_better_tenant_ids():
    call_command("check", databases=["default"], stdout=io.StringIO())
    messages = checks.run_checks(databases=["default"])
    assert [m for m in messages if m.is_serious()] == []
    assert [m.id for m in messages if (m.id or "").startswith("better_tenant")] == []


def test_admin_pages_render(admin_client):
    Order.objects.create(number="A-1")
    [entry] = entries()
    changelist = admin_client.get(reverse("admin:better_audit_auditlog_changelist"))
    assert changelist.status_code == 200
    assert TABLE in changelist.content.decode()
    change = admin_client.get(reverse("admin:better_audit_auditlog_change", args=[entry.pk]))
    assert change.status_code == 200
    assert "A-1" in change.content.decode()
    dashboard = admin_client.get(reverse("admin:better_audit_auditlog_dashboard"))
    assert dashboard.status_code == 200
