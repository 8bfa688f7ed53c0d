"""audit.export() and export_response(): JSON/NDJSON/CSV shapes, outputs, chain head, scope."""

from __future__ import annotations

import csv
import importlib
import io
import json
from datetime import datetime, timedelta

import pytest
from django.http import StreamingHttpResponse

import better_audit as audit
from better_audit import integrity
from better_audit.exports import CHAIN_HEAD_HEADER, FIELDS
from better_tenant import run_as, run_as_system
from tests.audit.test_query import NOW, add

pytestmark = pytest.mark.django_db

HEAD = {"algorithm": "sha256", "chains": [{"chain": None, "seq": 3, "hash": "ab" * 32}]}


@pytest.fixture
def fake_head(monkeypatch):
    """A fixed chain head; records the tenant each call asked for."""
    calls = []

    def chain_head(tenant_id=None):
        calls.append(tenant_id)
        return HEAD

    monkeypatch.setattr(integrity, "chain_head", chain_head)
    return calls


@pytest.fixture
def rows():
    first = add(
        timestamp=NOW - timedelta(hours=2),
        table_name="users",
        operation="UPDATE",
        record_id="7",
        actor_id="user-42",
        before_data={"name": "Alice", "tags": ["a"], "n": 1.5},
        after_data={"name": 'Ali "ce", <b>', "tags": ["a", "b"], "n": 2},
        diff={"changed_fields": ["name", "tags", "n"]},
        label="Profile, updated",
        severity="high",
        compliance=["gdpr", "soc2"],
        notify=True,
        metadata={"ip": "10.0.0.1"},
        redacted_fields=["ssn"],
        correlation_id="req-1",
    )
    second = add(timestamp=NOW - timedelta(hours=1), table_name="payments", record_id="9")
    return first, second


def system_export(**kwargs):
    with run_as_system():
        return audit.export(**kwargs)


def test_json_array_keeps_the_entry_shape_and_ends_with_the_chain_head(rows, fake_head):
    data = json.loads(system_export(format="json"))
    *entries, trailer = data
    assert trailer == {"_chain_head": HEAD}
    assert [e["id"] for e in entries] == [str(rows[0].id), str(rows[1].id)]  # oldest first
    first = entries[0]
    assert list(first) == list(FIELDS)
    assert first["before_data"] == {"name": "Alice", "tags": ["a"], "n": 1.5}
    assert first["after_data"]["name"] == 'Ali "ce", <b>'
    assert first["diff"] == {"changed_fields": ["name", "tags", "n"]}
    assert first["compliance"] == ["gdpr", "soc2"]
    assert first["redacted_fields"] == ["ssn"]
    assert first["notify"] is True
    assert first["metadata"] == {"ip": "10.0.0.1"}
    assert datetime.fromisoformat(first["timestamp"]) == rows[0].timestamp
    assert entries[1]["before_data"] is None and entries[1]["actor_id"] is None
    assert entries[1]["compliance"] == [] and entries[1]["tenant_id"] is None


def test_ndjson_is_one_entry_per_line_then_the_chain_head(rows, fake_head):
    text = system_export(format="json", json_style="ndjson")
    lines = text.splitlines()
    assert text.endswith("\n") and len(lines) == 3
    entries = [json.loads(line) for line in lines]
    assert [e.get("record_id") for e in entries[:2]] == ["7", "9"]
    assert entries[2] == {"_chain_head": HEAD}


def test_csv_has_the_documented_columns_and_nothing_but_entries(rows, fake_head):
    text = system_export(format="csv")
    reader = csv.DictReader(io.StringIO(text))
    assert reader.fieldnames == list(FIELDS)
    records = list(reader)
    assert len(records) == 2
    first = records[0]
    assert first["label"] == "Profile, updated"
    assert json.loads(first["after_data"])["name"] == 'Ali "ce", <b>'
    assert json.loads(first["compliance"]) == ["gdpr", "soc2"]
    assert first["notify"] == "true"
    assert records[1]["actor_id"] == "" and records[1]["before_data"] == ""
    assert datetime.fromisoformat(first["timestamp"]) == rows[0].timestamp
    assert fake_head == []  # CSV bodies never carry the head


def test_without_chain_head_json_is_exactly_an_array_of_entries(rows, fake_head):
    data = json.loads(system_export(format="json", chain_head=False))
    assert [e["record_id"] for e in data] == ["7", "9"]
    assert fake_head == []


def test_empty_exports_are_valid(fake_head):
    assert json.loads(system_export(format="json")) == [{"_chain_head": HEAD}]
    assert json.loads(system_export(format="json", chain_head=False)) == []
    assert system_export(format="csv").splitlines() == [",".join(FIELDS)]


def test_query_filters_and_explicit_order_apply(rows, fake_head):
    q = audit.query().resource("payments")
    data = json.loads(system_export(format="json", query=q, chain_head=False))
    assert [e["record_id"] for e in data] == ["9"]
    newest_first = json.loads(
        system_export(format="json", query=audit.query().order("desc"), chain_head=False)
    )
    assert [e["record_id"] for e in newest_first] == ["9", "7"]


def test_small_chunks_give_the_same_output(rows, fake_head):
    for n in range(5):
        add(record_id=f"x{n}", timestamp=NOW - timedelta(minutes=n))
    whole = system_export(format="json", json_style="ndjson")
    assert system_export(format="json", json_style="ndjson", chunk_size=2) == whole
    assert json.loads(system_export(format="json", chunk_size=2))[-1] == {"_chain_head": HEAD}


def test_output_to_a_path_a_text_stream_and_a_binary_stream(rows, fake_head, tmp_path):
    target = tmp_path / "audit.csv"
    summary = system_export(format="csv", output=target)
    assert summary.rows == 2 and summary.chain_head == HEAD
    assert target.read_text().splitlines()[0] == ",".join(FIELDS)

    text = io.StringIO()
    summary = system_export(format="json", json_style="ndjson", output=text)
    assert summary.rows == 2 and len(text.getvalue().splitlines()) == 3

    binary = io.BytesIO()
    system_export(format="json", output=binary)
    assert json.loads(binary.getvalue().decode())[-1] == {"_chain_head": HEAD}
    assert not binary.closed


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"format": "xml"}, "format must be one of json, csv; got 'xml'"),
        ({"format": "json", "json_style": "lines"}, "json_style must be one of array, ndjson"),
    ],
)
def test_bad_options_say_what_is_allowed(kwargs, message):
    with pytest.raises(ValueError, match=message):
        audit.export(**kwargs)
    with pytest.raises(ValueError, match=message):
        audit.export_response(**kwargs)


def body(response: StreamingHttpResponse) -> bytes:
    return b"".join(response.streaming_content)


def test_response_streams_json_with_an_attachment_name(rows, fake_head):
    with run_as_system():
        response = audit.export_response(format="json", filename="soc2-evidence-2025")
    assert isinstance(response, StreamingHttpResponse)
    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"] == 'attachment; filename="soc2-evidence-2025.json"'
    assert CHAIN_HEAD_HEADER not in response
    # Consumed after the scope ended, as a server does: the scope is re-entered for the body.
    data = json.loads(body(response))
    assert len(data) == 3 and data[-1] == {"_chain_head": HEAD}


def test_response_csv_carries_the_chain_head_in_a_header(rows, fake_head):
    with run_as_system():
        response = audit.export_response(format="csv", filename='../../etc/"x"')
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="etc-x.csv"'
    assert json.loads(response[CHAIN_HEAD_HEADER]) == HEAD
    assert len(list(csv.reader(io.StringIO(body(response).decode())))) == 3


def test_response_ndjson_type(rows, fake_head):
    with run_as_system():
        response = audit.export_response(format="json", json_style="ndjson")
    assert response["Content-Type"] == "application/x-ndjson"
    assert response["Content-Disposition"] == 'attachment; filename="audit-export.ndjson"'
    assert len(body(response).splitlines()) == 3


def test_response_body_keeps_the_tenant_scope_of_the_call(tenant, other_tenant, fake_head):
    add(tenant_id=tenant.pk, record_id="mine")
    add(tenant_id=other_tenant.pk, record_id="theirs")
    with run_as(tenant):
        response = audit.export_response(format="json", chain_head=True)
    data = json.loads(body(response))
    assert [e["record_id"] for e in data[:-1]] == ["mine"]
    assert fake_head == [tenant.pk]  # the head of the tenant's own chain


def test_outside_any_scope_a_tenant_trail_is_not_exported(tenant, fake_head):
    add(tenant_id=tenant.pk, record_id="mine")
    assert json.loads(audit.export(format="json", chain_head=False)) == []


def test_export_is_available_lazily():
    export_module = importlib.import_module("better_audit.exports")
    assert audit.export is export_module.export
    assert audit.export_response is export_module.export_response


@pytest.mark.django_db(transaction=True)
def test_an_export_outside_a_transaction_reads_one_repeatable_read_snapshot(monkeypatch):
    from django.db import connection

    seen = []

    def chain_head(tenant_id=None):
        with connection.cursor() as cursor:
            cursor.execute("SHOW transaction_isolation")
            seen.append(cursor.fetchone()[0])
        return HEAD

    monkeypatch.setattr(integrity, "chain_head", chain_head)
    assert not connection.in_atomic_block
    assert json.loads(audit.export(format="json")) == [{"_chain_head": HEAD}]
    assert seen == ["repeatable read"]


FORMULAS = ['=HYPERLINK("http://x.example","click")', "+1+2", "-2+3", "@SUM(A1)", "\tx", "\rx"]


@pytest.fixture
def formulas():
    """Entries whose client-chosen cells a spreadsheet would run as formulas."""
    for index, text in enumerate(FORMULAS):
        add(
            timestamp=NOW + timedelta(seconds=index),
            record_id=text,
            actor_id=text,
            label=text,
            metadata={"note": text},
        )


def test_csv_cells_that_start_a_formula_get_a_leading_quote(formulas, fake_head):
    records = list(csv.DictReader(io.StringIO(system_export(format="csv"), newline="")))
    assert [r["record_id"] for r in records] == ["'" + text for text in FORMULAS]
    assert [r["actor_id"] for r in records] == ["'" + text for text in FORMULAS]
    assert [r["label"] for r in records] == ["'" + text for text in FORMULAS]
    # A JSON cell starts with "{": it stays JSON, whatever its values hold.
    assert [json.loads(r["metadata"])["note"] for r in records] == FORMULAS
    # Cells that start no formula are left alone.
    assert all(r["operation"] == "INSERT" and r["table_name"] == "projects" for r in records)


def test_csv_for_programs_keeps_cells_as_stored(formulas, fake_head):
    text = system_export(format="csv", neutralize_formulas=False)
    records = list(csv.DictReader(io.StringIO(text, newline="")))
    assert [r["record_id"] for r in records] == FORMULAS


def test_csv_response_and_camel_naming_neutralize_too(formulas, fake_head):
    with run_as_system():
        response = audit.export_response(format="csv", naming="camel")
    records = list(csv.DictReader(io.StringIO(body(response).decode(), newline="")))
    assert [r["recordId"] for r in records] == ["'" + text for text in FORMULAS]
    with run_as_system():
        response = audit.export_response(format="csv", neutralize_formulas=False)
    records = list(csv.DictReader(io.StringIO(body(response).decode(), newline="")))
    assert [r["record_id"] for r in records] == FORMULAS


def test_json_exports_are_left_as_stored(formulas, fake_head):
    entries = json.loads(system_export(format="json", chain_head=False))
    assert [e["record_id"] for e in entries] == FORMULAS
