"""Single-statement capture: a change and its audit row as one statement, stored as before."""

from __future__ import annotations

import datetime
import decimal
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

import better_audit as audit
from better_audit import capture, seams, trail, writer
from better_audit.models import AuditLog
from better_tenant import no_tenant, run_as, run_as_system
from tests.support.audit import logs
from tests.testapp.models import Event, Invoice, InvoiceLine, Label, Shop

pytestmark = pytest.mark.django_db

COMPARED = [f.attname for f in AuditLog._meta.concrete_fields if f.name not in ("id", "timestamp")]


class _Undo(Exception):
    """Rolls a scenario back so that the other path can replay it with the same keys."""


def _stored(row: AuditLog) -> dict[str, Any]:
    values = {name: getattr(row, name) for name in COMPARED}
    for name in ("before_data", "after_data"):
        image = values[name]
        if image and "created" in image:
            # auto_now_add differs between the two runs; its rendering is tested elsewhere.
            values[name] = {**image, "created": "<set>"}
    return values


def run(scenario: Callable[[], None], *, folded: bool) -> list[dict[str, Any]]:
    """The audit rows ``scenario`` writes through one path, then rolled back."""
    # An AFTER_LOG hook is one of the things that need the entries in Python: the other path.
    dispose = None if folded else audit.on_after_log(lambda entry: None)
    try:
        with CaptureQueriesContext(connection) as queries:
            try:
                with transaction.atomic():
                    scenario()
                    rows = [_stored(row) for row in logs()]
                    raise _Undo
            except _Undo:
                pass
    finally:
        if dispose is not None:
            dispose()
    statements = [q["sql"] for q in queries.captured_queries]
    written = [sql for sql in statements if trail.WRITE_FUNCTION in sql]
    carried = [sql for sql in statements if trail.STATEMENT_SETTING in sql]
    assert rows, "the scenario wrote no audit row"
    if folded:
        assert written == [] and carried
    else:
        assert written and carried == []
    return rows


def assert_same_rows(scenario: Callable[[], None]) -> list[dict[str, Any]]:
    # Per table in time order (the rows of a multi-table save are written parent first by the
    # statements, child first by the save signal).
    one = sorted(run(scenario, folded=True), key=lambda row: row["table_name"])
    other = sorted(run(scenario, folded=False), key=lambda row: row["table_name"])
    assert len(one) == len(other)
    for mine, theirs in zip(one, other, strict=True):
        for name in COMPARED:
            assert mine[name] == theirs[name], (name, mine, theirs)
            assert type(mine[name]) is type(theirs[name]), name
    return one


# --- the same stored rows through both paths ------------------------------------------------------

TYPES = {
    "amount": decimal.Decimal("1.005"),
    "ratio": 0.1,
    "issued_at": datetime.datetime(2024, 3, 1, 10, 0, 0, 120000, tzinfo=datetime.UTC),
    "due": datetime.date(2024, 2, 29),
    "cutoff": datetime.time(23, 59, 59, 500),
    "grace": datetime.timedelta(days=1, hours=2),
    "blob": b"\x00\xffaudit",
    "ip": "2001:db8::1",
    "data": {"nested": {"b": 1, "a": [True, None, 1.5]}, "s": "x"},
}


def new_invoice(**values: Any) -> Invoice:
    """An invoice with fixed keys, so that both runs write the same rows."""
    values.setdefault("ref", uuid.UUID(int=values["id"]))
    return Invoice.objects.create(**values)


def test_invoice_lifecycle_is_stored_identically(tenant):
    def scenario():
        with run_as(tenant):
            invoice = new_invoice(id=900001, number="A-1", **TYPES)
            invoice.amount = decimal.Decimal("13.00")
            invoice.paid = True
            invoice.data = {"nested": {"a": [], "b": 1}}
            invoice.save()
            invoice.save()  # nothing changed: still logged, with changed_fields []
            invoice.number = "not saved"
            invoice.secret = "s"
            invoice.save(update_fields=["secret"])
            invoice.amount = F("amount") + decimal.Decimal("2.25")
            invoice.save()
            invoice.refresh_from_db()
            invoice.delete()

    rows = assert_same_rows(scenario)
    assert [row["operation"] for row in rows] == ["INSERT", *["UPDATE"] * 4, "DELETE"]
    assert rows[1]["diff"] == {"changed_fields": ["data", "paid", "amount"]}
    assert rows[2]["diff"] == {"changed_fields": []}
    assert rows[3]["diff"] == {"changed_fields": ["secret"]}
    assert rows[3]["after_data"]["number"] == "A-1"
    assert rows[4]["after_data"]["amount"] == 15.25
    assert all(row["tenant_id"] == tenant.pk for row in rows)


def test_shared_rows_take_the_tenant_in_scope_or_none(tenant):
    def scenario():
        with run_as(tenant):
            label = Label.objects.create(id=uuid.UUID(int=1), name="red")
            label.color = "#f00"
            label.save()
        with no_tenant():
            other = Label.objects.create(id=uuid.UUID(int=2), name="blue")
            other.delete()

    rows = assert_same_rows(scenario)
    assert [row["tenant_id"] for row in rows] == [tenant.pk, tenant.pk, None, None]
    assert rows[0]["record_id"] == str(uuid.UUID(int=1))


def test_tables_without_before_state_and_multi_table_inheritance(tenant):
    def scenario():
        with run_as(tenant):
            event = Event.objects.create(id=900002, kind="signup", payload={"a": 1})
            event.kind = "login"
            event.save()
            event.delete()
        shop = Shop.objects.create(id=900003, name="Corner", opens=datetime.time(9, 30))
        shop.name = "Corner shop"
        shop.save()
        shop.delete()

    rows = assert_same_rows(scenario)
    event_update = next(r for r in rows if r["table_name"] == "test_events" and r["diff"] is None)
    assert event_update["operation"] in ("UPDATE", "INSERT")
    assert [r["before_data"] for r in rows if r["table_name"] == "test_events"] == [None] * 3
    assert sorted(
        (r["table_name"], r["operation"]) for r in rows if r["table_name"] != "test_events"
    ) == sorted(
        (table, op)
        for table in ("test_places", "test_shops")
        for op in ("INSERT", "UPDATE", "DELETE")
    )


def test_context_and_enrichment_are_stored_identically(tenant):
    audit.enrich("*", "*", compliance=["soc2"], notify=False)
    audit.enrich("test_invoices", "*", label="invoice", severity="high", redact=["secret", "ip"])
    audit.enrich("test_invoices", "UPDATE", compliance=["sox"], notify=True)
    audit.enrich("test_labels", "*", include=["name", "id"], description=lambda ctx: "unused")

    def scenario():
        with (
            audit.audit_context(
                actor_id="user-1",
                reason="ticket 42",
                description="by hand",
                metadata={"ip": "10.0.0.1"},
                compliance=["gdpr"],
                correlation_id="corr-1",
            ),
            run_as(tenant),
        ):
            invoice = new_invoice(id=900004, number="A", secret="pw", ip="10.0.0.9")
            invoice.secret = "new"
            invoice.number = "B"
            invoice.save()
            label = Label.objects.create(id=uuid.UUID(int=3), name="red", color="#f00")
            label.color = "#0f0"
            label.save()
            label.delete()

    rows = assert_same_rows(scenario)
    created, updated = rows[0], rows[1]
    assert (created["label"], created["severity"], created["notify"]) == ("invoice", "high", False)
    assert created["compliance"] == ["gdpr", "soc2"]
    assert created["redacted_fields"] == ["ip", "secret"]
    assert "secret" not in created["after_data"] and "ip" not in created["after_data"]
    assert updated["diff"] == {"changed_fields": ["number"]}
    assert (updated["notify"], updated["compliance"]) == (True, ["gdpr", "soc2", "sox"])
    label_update = rows[3]
    assert label_update["after_data"] == {"id": str(uuid.UUID(int=3)), "name": "red"}
    assert label_update["redacted_fields"] == ["color"]
    assert label_update["diff"] == {"changed_fields": []}
    assert label_update["description"] == "by hand"
    assert (label_update["actor_id"], label_update["reason"]) == ("user-1", "ticket 42")
    assert (label_update["metadata"], label_update["correlation_id"]) == (
        {"ip": "10.0.0.1"},
        "corr-1",
    )


def test_deletes_of_many_rows_are_stored_identically(tenant):
    def scenario():
        with run_as(tenant):
            invoice = new_invoice(id=900005, number="A")
            for n in range(4):
                InvoiceLine.objects.create(id=900010 + n, invoice=invoice, text=f"l{n}")
            InvoiceLine.objects.filter(text="l0").delete()
            invoice.delete()  # cascades to the other lines

    rows = assert_same_rows(scenario)
    deletes = [r for r in rows if r["operation"] == "DELETE"]
    assert sorted(r["record_id"] for r in deletes) == [
        "900005",
        "900010",
        "900011",
        "900012",
        "900013",
    ]
    assert all(r["before_data"]["id"] == int(r["record_id"]) for r in deletes)


def test_deletes_above_the_before_state_limit_are_stored_identically(tenant):
    def scenario():
        with run_as(tenant):
            invoice = new_invoice(id=900006, number="A")
            for n in range(3):
                InvoiceLine.objects.create(id=900020 + n, invoice=invoice, text="x")
            with override_settings(
                BETTER_AUDIT={**settings.BETTER_AUDIT, "MAX_BEFORE_STATE_ROWS": 2}
            ):
                InvoiceLine.objects.filter(text="x").delete()

    rows = assert_same_rows(scenario)
    assert [r["before_data"] for r in rows if r["operation"] == "DELETE"] == [None] * 3


def test_set_wise_updates_are_stored_identically(tenant):
    def scenario():
        with run_as(tenant):
            for n in range(4):
                new_invoice(id=900030 + n, number=f"N{n}", amount=n)
            Invoice.objects.filter(amount__gte=1).update(paid=True, amount=F("amount") * 10)
            Invoice.objects.filter(number="N0").update(number="N0")  # changes nothing
            Event.objects.create(id=900040, kind="a")
            Event.objects.update(kind="b")  # no before-state for this table

    rows = assert_same_rows(scenario)
    updates = [r for r in rows if r["operation"] == "UPDATE" and r["table_name"] == "test_invoices"]
    assert [r["diff"] for r in updates] == [{"changed_fields": ["paid", "amount"]}] * 3 + [
        {"changed_fields": []}
    ]
    assert [r["after_data"]["amount"] for r in updates] == [10, 20, 30, 0]
    [event] = [r for r in rows if r["operation"] == "UPDATE" and r["table_name"] == "test_events"]
    assert (event["before_data"], event["diff"], event["after_data"]["kind"]) == (None, None, "b")


def test_set_wise_updates_above_the_before_state_limit_are_stored_identically(tenant):
    def scenario():
        with run_as(tenant):
            for n in range(3):
                new_invoice(id=900050 + n, number="L")
            limited = {**settings.BETTER_AUDIT, "MAX_BEFORE_STATE_ROWS": 2}
            with override_settings(BETTER_AUDIT=limited):
                Invoice.objects.filter(number="L").update(paid=True)

    rows = assert_same_rows(scenario)
    updates = [r for r in rows if r["operation"] == "UPDATE"]
    assert [(r["before_data"], r["diff"]) for r in updates] == [(None, None)] * 3
    assert all(r["after_data"]["paid"] is True for r in updates)


def test_bulk_create_is_stored_identically(tenant):
    def scenario():
        with run_as(tenant):
            Invoice.objects.bulk_create(
                [
                    Invoice(id=900060 + n, number=f"B{n}", amount=n, ref=uuid.UUID(int=n))
                    for n in range(5)
                ]
            )
        Label.objects.bulk_create(
            [Label(id=uuid.UUID(int=100 + n), name=f"b{n}") for n in range(3)]
        )

    rows = assert_same_rows(scenario)
    assert [r["record_id"] for r in rows if r["table_name"] == "test_invoices"] == [
        str(900060 + n) for n in range(5)
    ]
    assert [r["tenant_id"] for r in rows] == [tenant.pk] * 5 + [None] * 3


def test_bulk_create_returns_what_django_asked_the_insert_for(tenant):
    with run_as(tenant), CaptureQueriesContext(connection) as queries:
        created = Invoice.objects.bulk_create([Invoice(number=f"K{n}") for n in range(3)])
    assert [q["sql"].split()[0] for q in queries.captured_queries] == ["INSERT"]
    assert all(isinstance(obj.pk, int) for obj in created)
    with run_as(tenant):
        assert [Invoice.objects.get(pk=obj.pk).number for obj in created] == ["K0", "K1", "K2"]
    assert sorted(r.record_id for r in logs()) == sorted(str(obj.pk) for obj in created)


def test_the_other_path_still_writes_bulk_entries_in_batches(tenant):
    audit.on_after_log(lambda entry: None)
    batched = {**settings.BETTER_AUDIT, "BATCH_SIZE": 2}
    with (
        override_settings(BETTER_AUDIT=batched),
        run_as(tenant),
        CaptureQueriesContext(connection) as queries,
    ):
        Invoice.objects.bulk_create([Invoice(number=f"N{n}") for n in range(5)])
    # The claim, one INSERT of the rows, the audit rows in batches of two, the claim given back.
    statements = [q["sql"] for q in queries.captured_queries]
    assert [s.split()[0] for s in statements] == ["SELECT", "INSERT", *["SELECT"] * 3, "SELECT"]
    assert sum(trail.WRITE_FUNCTION in s for s in statements) == 3
    assert len(logs()) == 5


def test_system_mode_logs_each_rows_tenant(tenant, other_tenant):
    def scenario():
        with run_as_system():
            new_invoice(id=900007, number="A", tenant_id=tenant.pk)
            new_invoice(id=900008, number="B", tenant_id=other_tenant.pk)
            Invoice.objects.filter(id__in=[900007, 900008]).delete()

    rows = assert_same_rows(scenario)
    assert [r["tenant_id"] for r in rows] == [
        tenant.pk,
        other_tenant.pk,
        tenant.pk,
        other_tenant.pk,
    ]


# --- one statement, no transaction around it ---------------------------------------------------


def test_in_autocommit_mode_each_change_is_one_statement_outside_any_transaction(
    transactional_db,
):
    seen: list[tuple[str, bool]] = []

    def spy(execute, sql, params, many, context):
        seen.append((sql.split()[0], connection.in_atomic_block))
        return execute(sql, params, many, context)

    assert connection.get_autocommit()
    with connection.execute_wrapper(spy):
        label = Label.objects.create(name="auto")
        label.color = "red"
        label.save()
        label.delete()
    # Each statement carries its context to the trigger, which writes its entry.
    assert seen == [("INSERT", False), ("UPDATE", False), ("DELETE", False)]
    assert [(r.operation, r.tenant_id) for r in logs()] == [
        ("INSERT", None),
        ("UPDATE", None),
        ("DELETE", None),
    ]
    assert logs()[1].diff == {"changed_fields": ["color"]}


def test_django_gets_the_values_it_asked_the_insert_for(tenant):
    with run_as(tenant):
        invoice = Invoice.objects.create(number="A")
        label = Label.objects.create(name="uuid key")
    assert isinstance(invoice.pk, int) and invoice.tenant_id == tenant.pk
    with run_as(tenant):
        assert Invoice.objects.get(pk=invoice.pk).number == "A"
    assert Label.objects.get(pk=label.pk).name == "uuid key"
    [invoice_row] = logs(table_name="test_invoices")
    assert invoice_row.record_id == str(invoice.pk)


@pytest.mark.parametrize("folded", [True, False], ids=["one statement", "other path"])
def test_a_saved_expression_gives_django_the_values_it_asked_the_update_for(tenant, folded):
    def scenario() -> None:
        with run_as(tenant):
            invoice = new_invoice(id=920001, number="A", amount=decimal.Decimal("1.50"))
            invoice.amount = F("amount") + 1
            invoice.save()
            stored = Invoice.objects.get(pk=invoice.pk).amount
        assert stored == decimal.Decimal("2.50")
        if seams.current().update_returns_rows:
            # Django 6.0+ has the UPDATE return the value and sets it on the instance.
            assert invoice.amount == decimal.Decimal("2.50")
        else:
            assert hasattr(invoice.amount, "resolve_expression")
        [_, update] = logs()
        assert (update.before_data["amount"], update.after_data["amount"]) == (1.5, 2.5)

    run(scenario, folded=folded)


def test_save_of_a_missing_row_falls_through_to_an_insert(tenant):
    with run_as(tenant):
        label = Label(id=uuid.UUID(int=5), name="new")
        label.save()  # Django tries the UPDATE first: it matches nothing and logs nothing
    assert [r.operation for r in logs()] == ["INSERT"]


# --- when Python must see the entry: the two-statement path ---------------------------------------


def test_a_before_log_hook_takes_the_other_path_and_can_change_the_entry(tenant):
    def tag(entry):
        entry.label = "hooked"

    audit.on_before_log(tag)
    with run_as(tenant), CaptureQueriesContext(connection) as queries:
        Invoice.objects.create(number="A")
    assert any(trail.WRITE_FUNCTION in q["sql"] for q in queries.captured_queries)
    assert [r.label for r in logs()] == ["hooked"]


def test_a_description_function_takes_the_other_path(tenant):
    audit.enrich("test_invoices", "INSERT", description=lambda ctx: f"#{ctx.after['number']}")
    assert writer.fold_blocked("test_invoices", "INSERT")
    assert not writer.fold_blocked("test_invoices", "DELETE")
    with run_as(tenant):
        invoice = Invoice.objects.create(number="A-7")
        invoice.delete()
    assert [r.description for r in logs()] == ["#A-7", None]


def test_async_write_takes_the_other_path():
    with override_settings(BETTER_AUDIT={**settings.BETTER_AUDIT, "ASYNC_WRITE": True}):
        assert writer.fold_blocked("test_labels", "INSERT")
        assert writer.fold_plan("test_labels", ("INSERT",)) is None
    assert writer.fold_plan("test_labels", ("INSERT",)) is not None


def test_models_the_statement_cannot_cover_are_not_folded(monkeypatch):
    assert capture._can_fold(Label, capture.tables.SAVE_SPECS[Label])
    monkeypatch.setattr(Label._meta, "select_on_save", True)
    assert not capture._can_fold(Label, capture.tables.SAVE_SPECS[Label])
