"""The paths signals miss: QuerySet.update/delete, cascades, bulk_create and bulk_update."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.db.models import F, Value
from django.db.models.functions import Concat
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from better_tenant import run_as
from tests.support.audit import logs
from tests.testapp.models import Attachment, Event, Invoice, InvoiceLine, Label

pytestmark = pytest.mark.django_db

AUDIT = {
    "TABLES": [
        "test_invoices",
        "test_invoice_lines",
        "test_attachments",
        "test_labels",
        "test_events",
    ],
    "SKIP_BEFORE_STATE": ["test_events"],
}


def images(model) -> dict[str, dict]:
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT t.id, to_jsonb(t.*) FROM "{model._meta.db_table}" t')
        return {str(pk): json.loads(image) for pk, image in cursor.fetchall()}


def kinds(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"].split()[0] for q in queries.captured_queries]


def by_record(rows) -> dict[str, object]:
    return {row.record_id: row for row in rows}


# --- QuerySet.update ------------------------------------------------------------------------------


def test_update_logs_each_matched_row_set_wise(tenant):
    with run_as(tenant):
        invoices = [Invoice.objects.create(number=f"N{i}", amount=i) for i in range(5)]
        before = images(Invoice)
        with CaptureQueriesContext(connection) as queries:
            count = Invoice.objects.filter(amount__gte=2).update(paid=True, amount=F("amount") * 10)
        after = images(Invoice)
    assert count == 3
    # One statement; the table's trigger logs it (tests/audit/test_trail.py).
    assert kinds(queries) == ["UPDATE"]
    rows = by_record(logs(operation="UPDATE"))
    assert sorted(rows, key=int) == [str(i.pk) for i in invoices[2:]]
    for pk, row in rows.items():
        assert row.before_data == before[pk]
        assert row.after_data == after[pk]
        assert sorted(row.diff["changed_fields"]) == ["amount", "paid"]
        assert row.tenant_id == tenant.pk


def test_update_through_a_join_and_an_annotation(tenant):
    with run_as(tenant):
        first = Invoice.objects.create(number="A")
        second = Invoice.objects.create(number="B")
        lines = [
            InvoiceLine.objects.create(invoice=invoice, text="t", qty=1)
            for invoice in (first, first, second)
        ]
        count = (
            InvoiceLine.objects.filter(invoice__number="A")
            .annotate(suffix=Value("!"))
            .update(text=Concat(F("text"), F("suffix")), qty=F("qty") + 1)
        )
    assert count == 2
    rows = by_record(logs(table_name="test_invoice_lines", operation="UPDATE"))
    assert set(rows) == {str(lines[0].pk), str(lines[1].pk)}
    for row in rows.values():
        assert (row.before_data["text"], row.after_data["text"]) == ("t", "t!")
        assert (row.before_data["qty"], row.after_data["qty"]) == (1, 2)


def test_update_matching_nothing_writes_nothing(tenant):
    with run_as(tenant):
        Invoice.objects.create(number="A")
        assert Invoice.objects.filter(number="none").update(paid=True) == 0
        assert Invoice.objects.none().update(paid=True) == 0
    assert logs(operation="UPDATE") == []


def test_update_above_max_before_state_rows_logs_no_before_state(tenant):
    with override_settings(BETTER_AUDIT={**AUDIT, "MAX_BEFORE_STATE_ROWS": 2}), run_as(tenant):
        for i in range(3):
            Invoice.objects.create(number=f"N{i}")
        assert Invoice.objects.update(paid=True) == 3
    rows = logs(operation="UPDATE")
    assert len(rows) == 3
    assert all(r.before_data is None and r.diff is None for r in rows)
    assert all(r.after_data["paid"] is True for r in rows)


def test_skip_before_state_tables_update_without_a_select(tenant):
    with run_as(tenant):
        Event.objects.create(kind="a")
        with CaptureQueriesContext(connection) as queries:
            assert Event.objects.update(kind="b") == 1
    assert kinds(queries) == ["UPDATE"]
    assert "FOR UPDATE" not in queries.captured_queries[0]["sql"]
    [row] = logs(operation="UPDATE")
    assert row.before_data is None and row.diff is None
    assert row.after_data["kind"] == "b"


def test_bulk_update_logs_each_object(tenant):
    with run_as(tenant):
        invoices = [Invoice.objects.create(number=f"N{i}") for i in range(4)]
        for i, invoice in enumerate(invoices):
            invoice.number = f"M{i}"
            invoice.paid = i % 2 == 0
        assert Invoice.objects.bulk_update(invoices, ["number", "paid"], batch_size=3) == 4
        after = images(Invoice)
    rows = by_record(logs(operation="UPDATE"))
    assert len(rows) == 4
    for i, invoice in enumerate(invoices):
        row = rows[str(invoice.pk)]
        assert row.before_data["number"] == f"N{i}"
        assert row.after_data == after[str(invoice.pk)]
        expected = ["number", "paid"] if i % 2 == 0 else ["number"]
        assert sorted(row.diff["changed_fields"]) == expected


# --- QuerySet.delete ------------------------------------------------------------------------------


def test_fast_delete_stays_one_statement_and_logs_every_row(tenant):
    with run_as(tenant):
        invoice = Invoice.objects.create(number="A")
        for i in range(30):
            InvoiceLine.objects.create(invoice=invoice, text=f"l{i}")
        before = images(InvoiceLine)
        with CaptureQueriesContext(connection) as queries:
            count, per_model = InvoiceLine.objects.filter(invoice=invoice).delete()
    assert (count, per_model) == (30, {"testapp.InvoiceLine": 30})
    # One statement; the table's trigger logs the rows it deleted.
    assert kinds(queries) == ["DELETE"]
    rows = by_record(logs(operation="DELETE"))
    assert rows.keys() == before.keys()
    assert all(rows[pk].before_data == before[pk] and rows[pk].after_data is None for pk in rows)


def test_cascading_delete_logs_children_deletes_and_set_null_updates(tenant):
    with run_as(tenant):
        invoice = Invoice.objects.create(number="A")
        other = Invoice.objects.create(number="B")
        line = InvoiceLine.objects.create(invoice=invoice, text="l")
        attachment = Attachment.objects.create(invoice=invoice, name="pdf")
        kept = Attachment.objects.create(invoice=other, name="kept")
        invoice_image = images(Invoice)[str(invoice.pk)]
        count, _ = Invoice.objects.filter(number="A").delete()
    assert count == 2
    deletes = {(r.table_name, r.record_id): r for r in logs(operation="DELETE")}
    assert set(deletes) == {
        ("test_invoices", str(invoice.pk)),
        ("test_invoice_lines", str(line.pk)),
    }
    assert deletes["test_invoices", str(invoice.pk)].before_data == invoice_image
    [unlinked] = logs(table_name="test_attachments", operation="UPDATE")
    assert unlinked.record_id == str(attachment.pk)
    assert unlinked.diff == {"changed_fields": ["invoice_id"]}
    assert (unlinked.before_data["invoice_id"], unlinked.after_data["invoice_id"]) == (
        invoice.pk,
        None,
    )
    assert kept.pk != attachment.pk


def test_delete_above_max_before_state_rows_keeps_record_ids(tenant):
    with override_settings(BETTER_AUDIT={**AUDIT, "MAX_BEFORE_STATE_ROWS": 2}), run_as(tenant):
        invoice = Invoice.objects.create(number="A")
        lines = [InvoiceLine.objects.create(invoice=invoice, text="l") for _ in range(3)]
        assert InvoiceLine.objects.all().delete()[0] == 3
    rows = logs(operation="DELETE")
    assert sorted(r.record_id for r in rows) == sorted(str(line.pk) for line in lines)
    assert all(r.before_data is None and r.tenant_id == tenant.pk for r in rows)


def test_skip_before_state_tables_delete_with_record_ids_only(tenant):
    with run_as(tenant):
        event = Event.objects.create(kind="a")
        Event.objects.all().delete()
    [row] = logs(operation="DELETE")
    assert (row.record_id, row.before_data, row.tenant_id) == (str(event.pk), None, tenant.pk)


# --- bulk_create ----------------------------------------------------------------------------------


def test_bulk_create_logs_each_row_in_batched_inserts(tenant):
    with override_settings(BETTER_AUDIT={**AUDIT, "BATCH_SIZE": 2}), run_as(tenant):
        with CaptureQueriesContext(connection) as queries:
            created = Invoice.objects.bulk_create(
                [Invoice(number=f"N{i}", amount=i) for i in range(5)]
            )
        stored = images(Invoice)
    # One statement inserts the rows; the trigger their entries (BATCH_SIZE: the other path).
    assert kinds(queries) == ["INSERT"]
    rows = by_record(logs(operation="INSERT"))
    assert rows.keys() == {str(obj.pk) for obj in created} == stored.keys()
    for pk, row in rows.items():
        assert row.after_data == stored[pk]
        assert row.tenant_id == tenant.pk


def test_bulk_create_ignoring_conflicts_logs_only_inserted_rows(tenant):
    red = Label.objects.create(name="red")
    Label.objects.bulk_create(
        [Label(name="red"), Label(name="blue"), Label(id=red.pk, name="crimson")],
        ignore_conflicts=True,
    )
    assert [r.after_data["name"] for r in logs(operation="INSERT")] == ["red", "blue"]
    with run_as(tenant):
        existing = Invoice.objects.create(number="old")
        Invoice.objects.bulk_create(
            [Invoice(number="new1"), Invoice(pk=existing.pk, number="dup"), Invoice(number="new2")],
            ignore_conflicts=True,
        )
        stored = images(Invoice)
    rows = logs(table_name="test_invoices", operation="INSERT")
    assert [r.after_data["number"] for r in rows] == ["old", "new1", "new2"]
    assert all(r.after_data == stored[r.record_id] for r in rows)


def test_bulk_create_upsert_logs_inserts_and_updates(tenant):
    red = Label.objects.create(name="red", color="r")
    Label.objects.bulk_create(
        [Label(name="red", color="R"), Label(name="green", color="g")],
        update_conflicts=True,
        unique_fields=["name"],
        update_fields=["color"],
    )
    update = logs(operation="UPDATE")[0]
    assert update.record_id == str(red.pk)
    assert (update.before_data["color"], update.after_data["color"]) == ("r", "R")
    assert update.diff == {"changed_fields": ["color"]}
    inserts = [r.after_data["name"] for r in logs(operation="INSERT")]
    assert inserts == ["red", "green"]


def test_rollback_of_bulk_paths_leaves_no_audit_row(tenant):
    with pytest.raises(RuntimeError), run_as(tenant):
        Invoice.objects.bulk_create([Invoice(number="a"), Invoice(number="b")])
        Invoice.objects.update(paid=True)
        Invoice.objects.all().delete()
        raise RuntimeError("abort")
    assert logs() == []
