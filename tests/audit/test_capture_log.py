"""capture_log(): validation, record ids, per-operation normalisation, raw SQL, tenants."""

from __future__ import annotations

import datetime
import decimal
import logging
import uuid

import pytest
from django.db import connection, transaction
from django.test import override_settings

import better_audit as audit
from better_audit.exceptions import MissingRecordId
from better_tenant import run_as
from tests.support.audit import logs
from tests.testapp.models import Invoice, Label

pytestmark = pytest.mark.django_db

AUDIT = {"TABLES": ["test_invoices", "test_labels"]}


@pytest.mark.parametrize("operation", ["UPSERT", "", None, "SELECT"])
def test_operation_must_be_insert_update_or_delete(operation):
    with pytest.raises(ValueError, match="INSERT, UPDATE, DELETE; got"):
        audit.capture_log("test_labels", operation, "1")
    assert logs() == []


def test_operation_is_case_insensitive():
    entry = audit.capture_log("test_labels", "insert", "1", after={"id": "1"})
    assert entry.operation == "INSERT"
    assert [r.operation for r in logs()] == ["INSERT"]


def test_insert_keeps_only_after_delete_only_before_update_both_with_diff():
    audit.capture_log("test_labels", "INSERT", "1", before={"name": "x"}, after={"name": "a"})
    audit.capture_log(
        "test_labels",
        "UPDATE",
        "1",
        before={"name": "a", "color": ""},
        after={"name": "b", "color": ""},
    )
    audit.capture_log("test_labels", "DELETE", "1", before={"name": "b"}, after={"name": "y"})
    insert, update, delete = logs()
    assert (insert.before_data, insert.after_data, insert.diff) == (None, {"name": "a"}, None)
    assert update.diff == {"changed_fields": ["name"]}
    assert (delete.before_data, delete.after_data, delete.diff) == ({"name": "b"}, None, None)


def test_values_are_stored_as_json_like_captured_images():
    when = datetime.datetime(2024, 5, 1, 12, 0, 0, 500000, tzinfo=datetime.UTC)
    key = uuid.uuid4()
    entry = audit.capture_log(
        "test_labels",
        "INSERT",
        key,
        after={"id": key, "at": when, "price": decimal.Decimal("9.90"), "day": when.date()},
    )
    assert entry.record_id == str(key)
    [row] = logs()
    assert row.after_data == {
        "id": str(key),
        "at": "2024-05-01T12:00:00.5+00:00",
        "price": 9.9,
        "day": "2024-05-01",
    }


def test_record_id_comes_from_the_primary_key_in_the_data():
    audit.capture_log("test_labels", "DELETE", before={"id": "k-1", "name": "a"})
    with override_settings(BETTER_AUDIT={**AUDIT, "PRIMARY_KEY": "uuid"}):
        audit.capture_log("test_labels", "INSERT", after={"uuid": "k-2"})
    assert [r.record_id for r in logs()] == ["k-1", "k-2"]


def test_missing_record_id_throw_skip_and_warn(caplog):
    with (
        override_settings(BETTER_AUDIT={**AUDIT, "ON_MISSING_RECORD_ID": "throw"}),
        pytest.raises(MissingRecordId, match="has no record id"),
    ):
        audit.capture_log("test_labels", "INSERT", after={"name": "a"})
    with override_settings(BETTER_AUDIT={**AUDIT, "ON_MISSING_RECORD_ID": "skip"}):
        assert audit.capture_log("test_labels", "INSERT", "") is None
    assert logs() == []
    with caplog.at_level(logging.WARNING, logger="better_audit"):
        entry = audit.capture_log("test_labels", "INSERT", after={"name": "a"})
    assert entry.record_id == ""
    assert "no record id" in caplog.text
    assert [r.record_id for r in logs()] == [""]


def test_unlisted_tables_are_skipped():
    assert audit.capture_log("sessions", "INSERT", "1") is None
    assert logs() == []


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="table_name"):
        audit.capture_log("", "INSERT", "1")
    with pytest.raises(ValueError, match="severity"):
        audit.capture_log("test_labels", "INSERT", "1", severity="urgent")
    with pytest.raises(TypeError, match="dict of column values"):
        audit.capture_log("test_labels", "INSERT", "1", after=["not", "a", "dict"])


def test_a_raw_sql_change_is_recorded_by_the_database_in_its_transaction(tenant):
    # The table's trigger records raw SQL; capture_log is for changes no trigger sees.
    with run_as(tenant):
        invoice = Invoice.objects.create(number="A-1")
    with pytest.raises(RuntimeError), run_as(tenant):
        with connection.cursor() as cursor:
            cursor.execute("UPDATE test_invoices SET paid = true WHERE id = %s", [invoice.pk])
        raise RuntimeError("rolled back")
    assert logs(operation="UPDATE") == []
    with run_as(tenant), connection.cursor() as cursor:
        cursor.execute("UPDATE test_invoices SET paid = true WHERE id = %s", [invoice.pk])
    [update] = logs(operation="UPDATE")
    assert (update.table_name, update.record_id) == ("test_invoices", str(invoice.pk))
    assert update.diff == {"changed_fields": ["paid"]}
    assert update.tenant_id == tenant.pk
    assert update.actor_id is None
    assert update.metadata["origin"] == "database"


def test_model_instances_and_tenant_from_the_data(tenant):
    with run_as(tenant):
        invoice = Invoice.objects.create(number="A-1")
    label = Label(name="unsaved")
    audit.capture_log("test_labels", "INSERT", label.pk, after=label, actor_id=42)
    [manual] = logs(table_name="test_labels")
    assert manual.after_data == {"id": str(label.pk), "name": "unsaved", "color": ""}
    assert manual.actor_id == "42"
    with transaction.atomic(), run_as(tenant):
        entry = audit.capture_log(
            "test_invoices", "UPDATE", invoice.pk, before=invoice, after=invoice
        )
    assert entry.tenant_id == tenant.pk
    assert entry.diff == {"changed_fields": []}


def test_a_listed_table_without_a_model_can_be_recorded():
    with override_settings(BETTER_AUDIT={"TABLES": ["legacy_ledger"]}):
        entry = audit.capture_log("legacy_ledger", "INSERT", "7", after={"id": 7, "sum": 3})
    assert entry is not None and entry.tenant_id is None
    assert [(r.table_name, r.after_data) for r in logs()] == [
        ("legacy_ledger", {"id": 7, "sum": 3})
    ]
