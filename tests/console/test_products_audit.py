"""Console product ``audit``: the trail with audit.query()'s filters, one entry, stats, exports."""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import timedelta

import pytest
from django.http import StreamingHttpResponse
from django.utils import timezone

import better_audit as audit
from better_audit import enrichment
from better_audit.models import AuditLog
from better_console.exceptions import ConsoleError
from better_console.registry import get_product
from better_tenant import run_as, run_as_system
from tests.console.products_support import call, ok, streamed
from tests.testapp.models import Invoice, Label

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_rules():
    yield
    enrichment.registry.clear()


@pytest.fixture
def trail(tenant, other_tenant):
    """Real captured entries: an invoice created and paid in ``tenant`` by ``user-a``, one created
    in ``other_tenant`` by ``user-b``, and a shared label (no tenant)."""
    audit.enrich("test_invoices", "UPDATE", label="Invoice paid", severity="high")
    audit.enrich("test_invoices", "UPDATE", compliance=["soc2"])
    with run_as(tenant), audit.audit_context(actor_id="user-a"):
        mine = Invoice.objects.create(number="A-1", amount=10)
        mine.paid = True
        mine.save()
    with run_as(other_tenant), audit.audit_context(actor_id="user-b"):
        theirs = Invoice.objects.create(number="B-1", amount=20)
    with run_as_system():
        label = Label.objects.create(name="urgent")
    return {"mine": mine, "theirs": theirs, "label": label}


def entries(**query):
    return ok(call("audit", "GET", "/logs", query=query))["data"]


def test_the_product_declares_each_route_with_its_permission():
    product = get_product("audit")
    assert {(e.method, e.path, e.required_permission) for e in product.endpoints} == {
        ("GET", "/logs", "read"),
        ("GET", "/logs/:id", "read"),
        ("GET", "/stats", "read"),
        ("GET", "/export", "read"),
    }


def test_logs_list_every_tenant_newest_first_in_camel_case(trail, tenant):
    data = entries()
    assert [(e["tableName"], e["operation"]) for e in data] == [
        ("test_labels", "INSERT"),
        ("test_invoices", "INSERT"),
        ("test_invoices", "UPDATE"),
        ("test_invoices", "INSERT"),
    ]
    paid = data[2]
    assert paid["recordId"] == str(trail["mine"].pk)
    assert paid["actorId"] == "user-a"
    assert paid["tenantId"] == str(tenant.pk)
    assert paid["beforeData"]["paid"] is False and paid["afterData"]["paid"] is True
    assert paid["diff"] == {"changedFields": ["paid"]}
    assert (paid["label"], paid["severity"], paid["compliance"]) == (
        "Invoice paid",
        "high",
        ["soc2"],
    )
    assert set(paid) >= {"id", "timestamp", "redactedFields", "correlationId", "metadata"}


def test_tenant_id_narrows_to_that_tenants_trail(trail, tenant, other_tenant):
    mine = entries(tenantId=tenant.pk)
    assert {e["tenantId"] for e in mine} == {str(tenant.pk)}
    assert [e["operation"] for e in mine] == ["UPDATE", "INSERT"]
    theirs = entries(tenantId=other_tenant.pk)
    assert [e["recordId"] for e in theirs] == [str(trail["theirs"].pk)]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"tableName": "test_labels"}, [("test_labels", "INSERT")]),
        ({"tableName": "testapp.Label"}, [("test_labels", "INSERT")]),
        ({"operation": "update"}, [("test_invoices", "UPDATE")]),
        ({"operation": "UPDATE,insert", "tableName": "test_labels"}, [("test_labels", "INSERT")]),
        ({"actorId": "user-b"}, [("test_invoices", "INSERT")]),
        ({"severity": "high,critical"}, [("test_invoices", "UPDATE")]),
        ({"compliance": "soc2"}, [("test_invoices", "UPDATE")]),
        ({"compliance": "soc2,gdpr"}, []),
        ({"search": "PAID"}, [("test_invoices", "UPDATE")]),
        ({"since": "1h"}, "all"),
        ({"since": "2000-01-01", "until": "2000-12-31"}, []),
    ],
)
def test_filters_mirror_the_query_builder(trail, query, expected):
    found = [(e["tableName"], e["operation"]) for e in entries(**query)]
    if expected == "all":
        assert len(found) == 4
    else:
        assert found == expected


def test_record_id_and_until_filters(trail):
    found = entries(recordId=trail["mine"].pk, tableName="test_invoices")
    assert [e["operation"] for e in found] == ["UPDATE", "INSERT"]
    today = timezone.now().date().isoformat()
    assert len(entries(until=today)) == 4  # a bare date includes that whole day
    assert entries(until=(timezone.now() - timedelta(days=1)).isoformat()) == []


def test_order_asc_lists_oldest_first(trail):
    assert [e["tableName"] for e in entries(order="asc")][-1] == "test_labels"


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"operation": "MERGE"}, "INVALID_FILTER"),
        ({"severity": "urgent"}, "INVALID_FILTER"),
        ({"since": "yesterday"}, "INVALID_FILTER"),
        ({"until": "soon"}, "INVALID_FILTER"),
        ({"since": "2025-02-01", "until": "2025-01-01"}, "INVALID_FILTER"),
        ({"order": "sideways"}, "INVALID_FILTER"),
        ({"tenantId": "acme"}, "INVALID_ID"),
        ({"limit": "201"}, "INVALID_LIMIT"),
        ({"cursor": "bm90IGEgY3Vyc29y"}, "INVALID_CURSOR"),
    ],
)
def test_bad_filters_are_400s_with_a_message(query, code):
    with pytest.raises(ConsoleError) as info:
        call("audit", "GET", "/logs", query=query)
    assert (info.value.status, info.value.code) == (400, code)
    assert info.value.error


def test_keyset_pages_walk_the_whole_trail_once(trail):
    seen, cursor = [], None
    while True:
        query = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        body = ok(call("audit", "GET", "/logs", query=query))
        seen += [e["id"] for e in body["data"]]
        cursor = body["nextCursor"]
        if cursor is None:
            break
    assert len(seen) == 4 and seen == [e["id"] for e in entries()]


def test_one_entry_by_id_and_isolation_by_tenant(trail, tenant, other_tenant):
    with run_as(tenant):
        entry = AuditLog.objects.get(operation="UPDATE")
    body = ok(call("audit", "GET", f"/logs/{entry.pk}"))
    assert (body["id"], body["operation"]) == (str(entry.pk), "UPDATE")
    assert ok(call("audit", "GET", f"/logs/{entry.pk}", query={"tenantId": tenant.pk}))
    with pytest.raises(ConsoleError) as info:
        call("audit", "GET", f"/logs/{entry.pk}", query={"tenantId": other_tenant.pk})
    assert (info.value.status, info.value.code) == (404, "NOT_FOUND")
    with pytest.raises(ConsoleError) as info:
        call("audit", "GET", f"/logs/{uuid.uuid4()}")
    assert info.value.status == 404
    with pytest.raises(ConsoleError) as info:
        call("audit", "GET", "/logs/42")
    assert (info.value.status, info.value.code) == (400, "INVALID_ID")


def test_stats_for_every_tenant_and_for_one(trail, tenant):
    body = ok(call("audit", "GET", "/stats"))
    assert body["totalLogs"] == 4
    assert body["tablesAudited"] == 2
    assert body["operationBreakdown"] == {"INSERT": 3, "UPDATE": 1, "DELETE": 0}
    assert body["severityBreakdown"]["high"] == 1
    assert {a["actorId"]: a["count"] for a in body["topActors"]} == {"user-a": 2, "user-b": 1}
    assert body["topTables"][0] == {"tableName": "test_invoices", "count": 3}
    assert len(body["eventsPerDay"]) == 30 and body["eventsPerDay"][-1]["count"] == 4
    mine = ok(call("audit", "GET", "/stats", query={"tenantId": tenant.pk, "days": "7"}))
    assert (mine["totalLogs"], mine["days"]) == (2, 7)
    assert [a["actorId"] for a in mine["topActors"]] == ["user-a"]
    assert ok(call("audit", "GET", "/stats", query={"days": "all"}))["days"] is None


@pytest.mark.parametrize("query", [{"days": "0"}, {"days": "366"}, {"top": "x"}])
def test_stats_refuse_bad_windows(query):
    with pytest.raises(ConsoleError) as info:
        call("audit", "GET", "/stats", query=query)
    assert (info.value.status, info.value.code) == (400, "INVALID_FILTER")


def test_export_json_streams_the_filtered_entries_and_the_chain_head(trail):
    response = call("audit", "GET", "/export", query={"tableName": "test_invoices"})
    assert isinstance(response, StreamingHttpResponse)
    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"] == 'attachment; filename="audit-export.json"'
    *rows, trailer = json.loads(streamed(response))
    assert [r["operation"] for r in rows] == ["INSERT", "UPDATE", "INSERT"]  # oldest first
    assert set(trailer) == {"_chain_head"}


def test_export_narrowed_to_a_tenant_holds_its_rows_only(trail, tenant):
    response = call("audit", "GET", "/export", query={"format": "ndjson", "tenantId": tenant.pk})
    assert response["Content-Type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in streamed(response).splitlines()]
    *rows, trailer = lines
    assert [r["tenant_id"] for r in rows] == [str(tenant.pk)] * 2
    assert [c["chain"] for c in trailer["_chain_head"]["chains"]] == [str(tenant.pk)]


def test_export_csv_with_a_filename(trail):
    response = call(
        "audit",
        "GET",
        "/export",
        query={"format": "csv", "filename": "soc2", "operation": "UPDATE"},
    )
    assert response["Content-Disposition"] == 'attachment; filename="soc2.csv"'
    header, *rows = list(csv.reader(io.StringIO(streamed(response).decode())))
    assert header[:3] == ["id", "timestamp", "table_name"] and len(rows) == 1


def test_export_refuses_an_unknown_format():
    with pytest.raises(ConsoleError) as info:
        call("audit", "GET", "/export", query={"format": "xml"})
    assert (info.value.status, info.value.code) == (400, "INVALID_FILTER")
