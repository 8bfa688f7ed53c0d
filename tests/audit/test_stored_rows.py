"""The exact audit rows a fixed set of changes stores, compared with a recorded reference.

``stored_rows.json`` holds the rows as PostgreSQL renders them (``to_jsonb`` of each row without
its random id and its clock time): work that makes capture faster (caching what is computed per
table, say) must not change the stored bytes, and so the hash chain over them.
"""

from __future__ import annotations

import datetime
import decimal
import itertools
import json
import re
import uuid
from pathlib import Path

import pytest
from django.db import connection, transaction

import better_audit as audit
from better_audit import writer
from better_audit.models import AuditLog
from better_tenant import no_tenant, run_as, run_as_system
from tests.testapp.models import Event, Invoice, InvoiceLine, Label, Shop

pytestmark = pytest.mark.django_db

REFERENCE = Path(__file__).with_name("stored_rows.json")
_CREATED = re.compile(r'"created": "[^"]*"')


class _Undo(Exception):
    """Rolls the scenario back once its rows are read."""


def _rules() -> None:
    audit.enrich("*", "*", compliance=["soc2"], notify=False)
    audit.enrich("test_invoices", "*", label="invoice", severity="high", redact=["secret", "ip"])
    audit.enrich("test_invoices", "UPDATE", compliance=["sox"], notify=True)
    audit.enrich("test_labels", "*", include=["name", "id"])
    audit.enrich("test_invoice_lines", "DELETE", severity="critical")


def _scenario(tenant) -> None:
    """Every single-row and set-wise path, with context fields that change between statements."""
    actors = itertools.count(1)
    with run_as(tenant):
        with audit.audit_context(
            actor_id="user-1",
            reason="ticket 42",
            metadata={"ip": "10.0.0.1"},
            compliance=["gdpr"],
            correlation_id="corr-1",
        ):
            invoice = Invoice.objects.create(
                id=910001,
                number="A-1",
                amount=decimal.Decimal("12.50"),
                secret="pw",
                ip="10.0.0.9",
                ref=uuid.UUID(int=7),
                issued_at=datetime.datetime(2024, 3, 1, 10, 0, 0, 120000, tzinfo=datetime.UTC),
                data={"nested": {"b": 1, "a": [True, None, 1.5]}},
            )
            invoice.number = "A-2"
            invoice.paid = True
            invoice.save()
            with audit.merge_audit_context(actor_id="user-2", metadata={"step": 2}):
                invoice.amount = decimal.Decimal("13.00")
                invoice.save()
            invoice.save()  # the outer context again, nothing changed
            for n in range(3):
                InvoiceLine.objects.create(id=910010 + n, invoice=invoice, text=f"l{n}", qty=n)
            InvoiceLine.objects.filter(invoice=invoice).update(qty=9)
            InvoiceLine.objects.bulk_create(
                [InvoiceLine(id=910020 + n, invoice=invoice, text=f"b{n}") for n in range(2)]
            )
            InvoiceLine.objects.filter(text="l0").delete()
        with audit.audit_context(
            actor=lambda: f"lazy-{next(actors)}", label="lazy", correlation_id="corr-2"
        ):
            event = Event.objects.create(id=910030, kind="signup", payload={"a": 1})
            event.kind = "login"
            event.save()
            event.delete()
            invoice.delete()  # cascades to the remaining lines
    with no_tenant():
        label = Label.objects.create(id=uuid.UUID(int=11), name="red", color="#f00")
        label.color = "#0f0"
        label.save()
        label.delete()
    shop = Shop.objects.create(id=910040, name="Corner", opens=datetime.time(9, 30))
    shop.name = "Corner shop"
    shop.save()
    shop.delete()


def stored_rows(tenant) -> list[str]:
    """The rows ``_scenario`` stores, as PostgreSQL's text of each, then rolled back."""
    _rules()
    try:
        with transaction.atomic():
            _scenario(tenant)
            with run_as_system(), connection.cursor() as cursor:
                cursor.execute(
                    "SELECT (to_jsonb(a.*) - 'id' - 'timestamp')::text FROM audit_logs a "
                    "WHERE a.record_id LIKE '910%%' OR a.table_name = 'test_labels' "
                    "ORDER BY a.timestamp, a.table_name, a.record_id"
                )
                rows = [text for (text,) in cursor.fetchall()]
            raise _Undo
    except _Undo:
        pass
    return [
        _CREATED.sub('"created": "<set>"', row.replace(str(tenant.pk), "<tenant>")) for row in rows
    ]


def test_rows_are_byte_identical_to_the_reference(tenant):
    assert writer.fold_plan("test_invoices", ("INSERT",)) is not None
    rows = stored_rows(tenant)
    assert rows == json.loads(REFERENCE.read_text())


# --- successive events of one table each follow their own tenant, rules and context ------------


def _label_rows() -> list[tuple]:
    with run_as_system():
        rows = AuditLog.objects.filter(table_name="test_labels").order_by("timestamp")
        return [
            (row.actor_id, row.label, row.metadata, row.tenant_id, row.compliance) for row in rows
        ]


def test_successive_events_follow_the_tenant_the_rules_and_the_context(tenant, other_tenant):
    context = audit.audit_context(actor_id="a", metadata={"n": 1})
    with context:
        with run_as(tenant):
            Label.objects.create(name="one")
        with run_as(other_tenant):
            Label.objects.create(name="two")
        audit.enrich("test_labels", "INSERT", label="ruled", compliance=["pci"])
        with run_as(other_tenant):
            Label.objects.create(name="three")
        # A dict of the context changed in place is stored as it now is.
        audit.get_audit_context().metadata["n"] = True
        Label.objects.create(name="four")
        with audit.merge_audit_context(actor_id="b"):
            Label.objects.create(name="five")
    Label.objects.create(name="six")
    assert _label_rows() == [
        ("a", None, {"n": 1}, tenant.pk, []),
        ("a", None, {"n": 1}, other_tenant.pk, []),
        ("a", "ruled", {"n": 1}, other_tenant.pk, ["pci"]),
        ("a", "ruled", {"n": True}, None, ["pci"]),
        ("b", "ruled", {"n": True}, None, ["pci"]),
        (None, "ruled", None, None, ["pci"]),
    ]


def test_the_lazy_actor_is_called_for_each_event():
    actors = iter(["first", "second"])
    with audit.audit_context(actor=lambda: next(actors)):
        Label.objects.create(name="one")
        Label.objects.create(name="two")
    assert [row[0] for row in _label_rows()] == ["first", "second"]


def test_a_hook_registered_between_events_sees_the_next_entries():
    Label.objects.create(name="one")
    seen = []
    audit.on_before_log(lambda entry: seen.append(entry.record_id))
    label = Label.objects.create(name="two")
    assert seen == [str(label.pk)]
    assert len(_label_rows()) == 2
