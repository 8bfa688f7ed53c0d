"""Single-row capture: save() and delete() on audited models, atomicity, context, tenants, RLS."""

from __future__ import annotations

import datetime
import decimal
import io
import json
import uuid
import zoneinfo

import pytest
from django.core.management import call_command
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import F
from django.test.utils import CaptureQueriesContext

import better_audit as audit
from better_audit import capture, trail
from better_audit.models import AuditLog
from better_tenant import no_tenant, run_as, run_as_system
from better_tenant.sql import POLICY_TENANT
from better_tenant.testing import connected_as_owner
from tests.support.audit import fixture_role_sql, logs
from tests.testapp.models import Invoice, Label, Note, PaidInvoice, Place, Shop

pytestmark = pytest.mark.django_db


def db_image(model, pk) -> dict:
    """The row as PostgreSQL renders it: what every audit image must equal."""
    with connection.cursor() as cursor:
        cursor.execute(
            f'SELECT to_jsonb(t.*) FROM "{model._meta.db_table}" t WHERE t.id = %s', [pk]
        )
        return json.loads(cursor.fetchone()[0])


def statements(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries.captured_queries]


# --- INSERT / UPDATE / DELETE ---------------------------------------------------------------------


def test_create_logs_one_insert_with_the_stored_row(tenant):
    with run_as(tenant):
        invoice = Invoice.objects.create(number="A-1", amount="12.50", data={"k": [1, 2]})
        stored = db_image(Invoice, invoice.pk)
    [row] = logs(table_name="test_invoices")
    assert (row.operation, row.record_id) == ("INSERT", str(invoice.pk))
    assert row.before_data is None
    assert row.after_data == stored
    assert row.after_data["amount"] == 12.5 and row.after_data["data"] == {"k": [1, 2]}
    assert row.diff is None
    assert row.tenant_id == tenant.pk


def test_save_logs_the_before_state_the_after_state_and_the_changed_fields(tenant):
    with run_as(tenant):
        invoice = Invoice.objects.create(number="A-1", amount="12.50")
        before = db_image(Invoice, invoice.pk)
        invoice.amount = decimal.Decimal("13.00")
        invoice.paid = True
        invoice.save()
        after = db_image(Invoice, invoice.pk)
    insert, update = logs(table_name="test_invoices")
    assert insert.operation == "INSERT"
    assert update.operation == "UPDATE"
    assert update.before_data == before
    assert update.after_data == after
    assert sorted(update.diff["changed_fields"]) == ["amount", "paid"]


def test_save_with_update_fields_logs_what_was_written(tenant):
    with run_as(tenant):
        invoice = Invoice.objects.create(number="A-1")
        invoice.number = "not saved"
        invoice.paid = True
        invoice.save(update_fields=["paid"])
        stored = db_image(Invoice, invoice.pk)
    update = logs(operation="UPDATE")[0]
    assert stored["number"] == "A-1"
    assert update.after_data == stored
    assert update.diff == {"changed_fields": ["paid"]}


def test_save_of_a_deferred_instance_reads_the_after_state(tenant):
    with run_as(tenant):
        created = Invoice.objects.create(number="A-1", secret="s")
        invoice = Invoice.objects.only("number").get(pk=created.pk)
        invoice.number = "A-2"
        invoice.save()
        stored = db_image(Invoice, invoice.pk)
    update = logs(operation="UPDATE")[0]
    assert update.after_data == stored
    assert update.diff == {"changed_fields": ["number"]}


def test_expression_assigned_to_a_field_is_logged_as_stored(tenant):
    with run_as(tenant):
        invoice = Invoice.objects.create(number="A-1", amount=10)
        invoice.amount = F("amount") + decimal.Decimal("2.25")
        invoice.save()
    update = logs(operation="UPDATE")[0]
    assert update.before_data["amount"] == 10
    assert update.after_data["amount"] == 12.25
    assert update.diff == {"changed_fields": ["amount"]}


def test_save_without_changes_still_logs_the_update(tenant):
    with run_as(tenant):
        invoice = Invoice.objects.create(number="A-1")
        invoice.save()
    update = logs(operation="UPDATE")[0]
    assert update.diff == {"changed_fields": []}
    assert update.before_data == update.after_data


def test_delete_logs_the_deleted_row(tenant):
    with run_as(tenant):
        invoice = Invoice.objects.create(number="A-1")
        stored = db_image(Invoice, invoice.pk)
        pk = invoice.pk
        invoice.delete()
    delete = logs(operation="DELETE")[0]
    assert (delete.record_id, delete.after_data, delete.diff) == (str(pk), None, None)
    assert delete.before_data == stored
    assert delete.tenant_id == tenant.pk


def test_proxy_models_are_audited_under_the_concrete_table(tenant):
    with run_as(tenant):
        invoice = PaidInvoice.objects.create(number="P-1", paid=True)
        invoice.delete()
    assert [(r.table_name, r.operation) for r in logs()] == [
        ("test_invoices", "INSERT"),
        ("test_invoices", "DELETE"),
    ]


def test_multi_table_inheritance_logs_each_table():
    shop = Shop.objects.create(name="Corner", opens=datetime.time(9, 30))
    shop.name = "Corner shop"
    shop.save()
    pk = shop.pk
    shop.delete()
    seen = [(r.table_name, r.operation) for r in logs()]
    assert sorted(seen) == sorted(
        [
            ("test_places", "INSERT"),
            ("test_shops", "INSERT"),
            ("test_places", "UPDATE"),
            ("test_shops", "UPDATE"),
            ("test_places", "DELETE"),
            ("test_shops", "DELETE"),
        ]
    )
    place_update = logs(table_name="test_places", operation="UPDATE")[0]
    assert place_update.diff == {"changed_fields": ["name"]}
    assert place_update.after_data == {"id": pk, "name": "Corner shop"}
    shop_insert = logs(table_name="test_shops", operation="INSERT")[0]
    assert shop_insert.after_data == {"place_ptr_id": pk, "opens": "09:30:00"}
    # A save of the parent alone writes only the parent's table.
    Place.objects.create(name="Park")
    assert len(logs(table_name="test_places", operation="INSERT")) == 2


def test_unlisted_tables_are_skipped_silently(tenant):
    with run_as(tenant):
        note = Note.objects.create(title="n")
        with CaptureQueriesContext(connection) as queries:
            note.title = "m"
            note.save()
        note.delete()
    assert logs() == []
    assert len(queries.captured_queries) == 1


# --- the lean single-row path ---------------------------------------------------------------------


def test_single_row_writes_cost_one_statement_each():
    with transaction.atomic():
        with CaptureQueriesContext(connection) as created:
            label = Label.objects.create(name="red")
        with CaptureQueriesContext(connection) as saved:
            label.color = "#f00"
            label.save()
        with CaptureQueriesContext(connection) as deleted:
            label.delete()
    # Each change is one statement that carries its context; the table's trigger writes the entry
    # (tests/audit/test_single_statement.py).
    assert [s.split()[0] for s in statements(created)] == ["INSERT"]
    assert [s.split()[0] for s in statements(saved)] == ["UPDATE"]
    assert [s.split()[0] for s in statements(deleted)] == ["DELETE"]
    every = [*statements(created), *statements(saved), *statements(deleted)]
    assert all(trail.STATEMENT_SETTING in statement for statement in every)
    assert not any("audit_logs" in statement for statement in every)
    assert [r.operation for r in logs()] == ["INSERT", "UPDATE", "DELETE"]


def test_without_the_folded_update_pre_save_reads_the_before_state(tenant, monkeypatch):
    # Django versions whose Model._do_update has another signature take this path.
    monkeypatch.setattr(capture, "_FOLDED_UPDATE", False)
    with run_as(tenant):
        invoice = Invoice.objects.create(number="A-1")
        before = db_image(Invoice, invoice.pk)
        with CaptureQueriesContext(connection) as saved:
            invoice.number = "A-2"
            invoice.save()
        after = db_image(Invoice, invoice.pk)
    # The claim, the before-state, the update, the entry, the claim given back.
    kinds = [s.split()[0] for s in statements(saved)]
    assert kinds == ["SELECT", "SELECT", "UPDATE", "SELECT", "SELECT"]
    assert trail.WRITE_FUNCTION in statements(saved)[3]
    update = logs(operation="UPDATE")[0]
    assert (update.before_data, update.after_data) == (before, after)
    assert update.diff == {"changed_fields": ["number"]}


# --- atomicity ------------------------------------------------------------------------------------


def test_rollback_leaves_no_audit_row(tenant):
    with pytest.raises(RuntimeError), run_as(tenant):
        invoice = Invoice.objects.create(number="A-1")
        invoice.paid = True
        invoice.save()
        raise RuntimeError("abort")
    assert logs() == []
    with run_as(tenant):
        assert not Invoice.objects.exists()


def test_a_failed_audit_write_undoes_the_change_in_autocommit_mode(transactional_db):
    # An audit row that the database refuses (here: a hook sets an invalid severity) must take
    # the change down with it, also when no transaction was open around save().
    def corrupt(entry):
        entry.severity = "urgent"

    dispose = audit.on_before_log(corrupt)
    try:
        assert connection.get_autocommit()
        with pytest.raises(IntegrityError):
            Label.objects.create(name="lost")
    finally:
        dispose()
    assert not Label.objects.filter(name="lost").exists()
    Label.objects.create(name="kept")
    assert [r.after_data["name"] for r in logs()] == ["kept"]


# --- context and tenants --------------------------------------------------------------------------


def test_actor_and_context_fields_are_recorded(tenant):
    with (
        audit.audit_context(actor_id="user-1", reason="ticket 42", metadata={"ip": "10.0.0.1"}),
        run_as(tenant),
    ):
        Invoice.objects.create(number="A-1")
        correlation = audit.get_audit_context().correlation_id
        with audit.merge_audit_context(actor_id="user-2", compliance=["soc2"]):
            Invoice.objects.create(number="A-2")
    first, second = logs()
    assert (first.actor_id, first.reason, first.metadata) == (
        "user-1",
        "ticket 42",
        {"ip": "10.0.0.1"},
    )
    assert (second.actor_id, second.compliance) == ("user-2", ["soc2"])
    assert first.correlation_id == second.correlation_id == correlation


def test_lazy_actor_is_resolved_when_the_entry_is_written(tenant):
    who = {"id": None}
    with audit.audit_context(actor=lambda: who["id"]), run_as(tenant):
        Invoice.objects.create(number="anonymous")
        who["id"] = 7
        Invoice.objects.create(number="known")
    assert [r.actor_id for r in logs()] == [None, "7"]


def test_rows_without_tenant_get_the_tenant_in_scope(tenant):
    with run_as(tenant):
        Label.objects.create(name="in scope")
    with no_tenant():
        Label.objects.create(name="outside")
    inside, outside = logs()
    assert inside.tenant_id == tenant.pk
    assert outside.tenant_id is None


def test_system_mode_logs_the_tenant_of_each_row(tenant, other_tenant):
    with run_as_system():
        Invoice.objects.create(number="A", tenant_id=tenant.pk)
        Invoice.objects.create(number="B", tenant_id=other_tenant.pk)
    assert [(r.after_data["number"], r.tenant_id) for r in logs()] == [
        ("A", tenant.pk),
        ("B", other_tenant.pk),
    ]


def test_a_tenant_reads_only_its_own_trail(tenant, other_tenant):
    with run_as(tenant):
        Invoice.objects.create(number="A")
    with run_as(other_tenant):
        Invoice.objects.create(number="B")
        assert [r.after_data["number"] for r in AuditLog.objects.all()] == ["B"]
    with run_as(tenant):
        assert [r.after_data["number"] for r in AuditLog.objects.all()] == ["A"]
    with no_tenant():
        assert not AuditLog.objects.exists()
    with run_as_system():
        assert AuditLog.objects.count() == 2


def test_the_app_role_cannot_change_or_delete_audit_rows(tenant):
    with run_as(tenant):
        Invoice.objects.create(number="A")
    # Refused outright by the append-only triggers (better_audit.integrity), even where
    # row-level security would match no row.
    for attempt in (
        lambda: AuditLog.objects.update(label="forged"),
        lambda: AuditLog.objects.all().delete(),
        lambda: connection.cursor().execute("UPDATE audit_logs SET actor_id = 'forged'"),
        lambda: connection.cursor().execute("DELETE FROM audit_logs"),
    ):
        with pytest.raises(DatabaseError, match="append-only"), run_as(tenant):
            attempt()
    [row] = logs()
    assert (row.label, row.actor_id) == (None, None)


def test_a_tenant_cannot_write_into_another_tenants_trail(tenant, other_tenant):
    with (
        pytest.raises(DatabaseError, match="row-level security"),
        run_as(tenant),
        connection.cursor() as cursor,
    ):
        cursor.execute(
            "INSERT INTO audit_logs (id, timestamp, table_name, operation, record_id, "
            "compliance, redacted_fields, tenant_id) "
            "VALUES (%s, now(), 't', 'INSERT', '1', '{}', '{}', %s)",
            [str(uuid.uuid4()), str(other_tenant.pk)],
        )


def audit_policies() -> list[tuple[str, str]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT policyname, cmd FROM pg_policies WHERE tablename = 'audit_logs' "
            "AND policyname <> 'test_fixture_rows' ORDER BY policyname"
        )
        return cursor.fetchall()


def test_the_policies_let_the_app_role_read_only(tenant):
    assert audit_policies() == [
        # The privileged path of purge (TO better_audit_admin only; better_audit.integrity).
        ("rls_audit_admin_delete", "DELETE"),
        ("rls_audit_admin_read", "SELECT"),
        ("rls_audit_read", "SELECT"),
        # The owner, whose functions write every entry (better_audit.trail).
        ("rls_audit_writer", "INSERT"),
        ("rls_system_audit_logs", "SELECT"),
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT roles::text[], pg_has_role(session_user, roles[1], 'MEMBER') "
            "FROM pg_policies WHERE tablename = 'audit_logs' AND policyname = 'rls_audit_writer'"
        )
        [(roles, member)] = cursor.fetchall()
        cursor.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'audit_logs'")
        assert roles == [cursor.fetchone()[0]] and member is False
    # Not even an entry of its own tenant: a blanket grant gives INSERT back, and row-level
    # security still refuses it (no INSERT policy admits the app role).
    for scope in (run_as(tenant), no_tenant()):
        with (
            pytest.raises(DatabaseError, match="row-level security"),
            scope,
            connection.cursor() as cursor,
        ):
            cursor.execute(
                "INSERT INTO audit_logs (id, timestamp, table_name, operation, record_id, "
                "compliance, redacted_fields, tenant_id) "
                "VALUES (%s, now(), 't', 'INSERT', '1', '{}', '{}', better_tenant_current())",
                [str(uuid.uuid4())],
            )
    out = io.StringIO()
    call_command("sqlmigrate", "better_audit", "0001", stdout=out)
    assert f"WITH CHECK (tenant_id IS NOT DISTINCT FROM {POLICY_TENANT})" in out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_the_audit_migration_reverses_and_reapplies():
    from better_tenant.conf import tenant_settings
    from better_tenant.sql import grant_privileges_sql

    with connection.cursor() as cursor:
        cursor.execute("SELECT session_user")
        app_role = cursor.fetchone()[0]
    with connected_as_owner():
        call_command("migrate", "better_audit", "zero", verbosity=0)
        with connection.cursor() as cursor:
            cursor.execute("SELECT to_regclass('audit_logs')")
            assert cursor.fetchone() == (None,)
        call_command("migrate", "better_audit", verbosity=0)
        with connection.cursor() as cursor:
            cursor.execute(grant_privileges_sql(None, app_role, tenant_settings.SYSTEM_ROLE))
            cursor.execute(fixture_role_sql(app_role))
    assert [name for name, _ in audit_policies()] == [
        "rls_audit_admin_delete",
        "rls_audit_admin_read",
        "rls_audit_read",
        "rls_audit_writer",
        "rls_system_audit_logs",
    ]


# --- images equal PostgreSQL's to_jsonb -----------------------------------------------------------

BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize(
    "values",
    [
        {
            "amount": decimal.Decimal("1.005"),
            "ratio": 0.1,
            "issued_at": datetime.datetime(2024, 3, 1, 10, 0, 0, 120000, tzinfo=BERLIN),
            "due": datetime.date(2024, 2, 29),
            "cutoff": datetime.time(23, 59, 59, 500),
            "grace": datetime.timedelta(days=1, hours=2),
            "blob": b"\x00\xffaudit",
            "ip": "2001:0db8:0000:0000:0000:0000:0000:0001",
            "data": {"nested": {"b": 1, "a": [True, None, 1.5]}, "s": "x"},
        },
        {
            "amount": 7,
            "ratio": float("nan"),
            "issued_at": datetime.datetime(2024, 1, 1, 0, 0, tzinfo=datetime.UTC),
            "cutoff": datetime.time(0, 0),
            "grace": datetime.timedelta(hours=-2, microseconds=10),
            "ip": "192.168.0.1",
            "data": [1, "two"],
            "paid": True,
        },
        {
            "amount": "-0.5",
            "ratio": 1e20,
            "grace": datetime.timedelta(0),
            "data": "just a string",
            "due": datetime.date(1999, 12, 31),
        },
    ],
    ids=["mixed", "edges", "zeros"],
)
def test_instance_images_equal_the_database_rendering(tenant, values):
    with run_as(tenant):
        invoice = Invoice.objects.create(number="T", **values)
        stored = db_image(Invoice, invoice.pk)
    [row] = logs()
    assert row.after_data == stored
    for key, value in stored.items():
        assert type(row.after_data[key]) is type(value) or isinstance(value, int | float), key
