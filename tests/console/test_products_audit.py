"""Console product ``audit``: the trail with audit.query()'s filters, one entry, stats, exports."""

from __future__ import annotations

import base64
import csv
import io
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.http import StreamingHttpResponse
from django.utils import timezone

import better_audit as audit
from better_audit import enrichment
from better_audit.exports import CAMEL_FIELDS
from better_audit.models import AuditLog
from better_console.exceptions import ConsoleError
from better_console.registry import get_product
from better_core.durations import iso_millis
from better_tenant import run_as, run_as_system
from tests.console.products_support import call, ok, streamed
from tests.support.audit import add_rows
from tests.testapp.models import Invoice, Label

pytestmark = pytest.mark.django_db

# The published columns (checked against the published server in tests/console/differential),
# then ours.
CSV_HEADER = list(CAMEL_FIELDS)


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


def add(**values) -> AuditLog:
    """One audit entry written as it is (any time, any tenant), in system mode."""
    entry = AuditLog(
        **{"table_name": "test_invoices", "operation": "INSERT", "record_id": "1", **values}
    )
    add_rows(entry)
    return entry


def inserts(count: int) -> None:
    """``count`` INSERT entries of test_invoices a second apart, record ids 0 up, oldest first."""
    base = timezone.now() - timedelta(days=1)
    add_rows(
        *(
            AuditLog(
                timestamp=base + timedelta(seconds=n),
                table_name="test_invoices",
                operation="INSERT",
                record_id=str(n),
            )
            for n in range(count)
        )
    )


def newest_first() -> list[str]:
    """Every entry id in the trail's order: timestamp, then id, newest first."""
    with run_as_system():
        return [
            str(pk)
            for pk in AuditLog.objects.order_by("-timestamp", "-id").values_list("pk", flat=True)
        ]


@pytest.fixture
def series() -> list[str]:
    """Seven entries a minute apart, two of them at the same instant (the id breaks the tie);
    their ids newest first."""
    base = timezone.now() - timedelta(hours=1)
    for minutes in (0, 1, 2, 2, 3, 4, 5):
        add(timestamp=base - timedelta(minutes=minutes), record_id=str(minutes))
    return newest_first()


def logs(**query) -> dict:
    return ok(call("audit", "GET", "/logs", query=query))


def entries(**query) -> list[dict]:
    return logs(**query)["entries"]


def ids(body: dict) -> list[str]:
    return [e["id"] for e in body["entries"]]


def cursor_id(cursor: str) -> str:
    """The entry a cursor points at: the published servers' base64 JSON ``{"t", "i"}``."""
    payload = json.loads(base64.b64decode(cursor))
    assert set(payload) == {"t", "i"} and payload["t"].endswith("Z")
    return payload["i"]


def refused(method: str, path: str, **kwargs) -> ConsoleError:
    with pytest.raises(ConsoleError) as info:
        call("audit", method, path, **kwargs)
    return info.value


def count() -> int:
    with run_as_system():
        return AuditLog.objects.count()


def test_the_product_declares_each_route_with_its_permission():
    product = get_product("audit")
    assert {(e.method, e.path, e.required_permission) for e in product.endpoints} == {
        ("GET", "/logs", "read"),
        ("GET", "/logs/:id", "read"),
        ("GET", "/stats", "read"),
        ("GET", "/enrichments", "read"),
        ("GET", "/export", "read"),
        ("DELETE", "/logs", "admin"),
    }


# --- /logs ----------------------------------------------------------------------------------------


def test_logs_list_every_tenant_newest_first_in_camel_case(trail, tenant):
    body = logs()
    assert set(body) == {"entries", "hasNextPage"} and body["hasNextPage"] is False
    data = body["entries"]
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
    assert set(paid) >= {"id", "timestamp", "redactedFields", "correlationId"}
    with run_as_system():
        stored = AuditLog.objects.get(pk=paid["id"])
    assert paid["timestamp"] == iso_millis(stored.timestamp)
    assert (
        len(paid["timestamp"]) == len("2025-01-31T12:00:00.000Z") and paid["timestamp"][-1] == "Z"
    )


def test_empty_columns_are_left_out_of_an_entry(trail):
    label = entries(tableName="test_labels")[0]
    # No actor, no before-image, no diff, no enrichment, no tenant: absent, not null.
    absent = {"actorId", "beforeData", "diff", "label", "severity", "notify", "tenantId"}
    assert absent.isdisjoint(label)
    assert None not in label.values()
    assert label["afterData"]["name"] == "urgent"


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
        ({"actorId": "user-b,nobody"}, [("test_invoices", "INSERT")]),
        ({"severity": "high,critical"}, [("test_invoices", "UPDATE")]),
        ({"compliance": "soc2"}, [("test_invoices", "UPDATE")]),
        ({"compliance": "soc2,gdpr"}, []),
        ({"search": "PAID"}, [("test_invoices", "UPDATE")]),
        ({"search": "%"}, []),
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


def test_record_id_filter(trail):
    found = entries(recordId=trail["mine"].pk, tableName="test_invoices")
    assert [e["operation"] for e in found] == ["UPDATE", "INSERT"]
    assert entries(recordId=trail["mine"].pk, tableName="test_labels") == []


def test_an_empty_table_record_or_tag_matches_as_a_value(trail):
    add(table_name="", record_id="", compliance=[""])
    assert [e["recordId"] for e in entries(tableName="")] == [""]
    assert [e["tableName"] for e in entries(tableName="test_invoices", recordId="")] == []
    assert [e["tableName"] for e in entries(tableName="", recordId="")] == [""]
    assert [e["compliance"] for e in entries(compliance="")] == [[""]]
    # An empty actor or severity list filters nothing.
    assert len(entries(actorId="", severity="")) == 5


@pytest.mark.parametrize("operation", ["", ",", " , "])
def test_no_operation_at_all_is_a_400(trail, operation):
    error = refused("GET", "/logs", query={"operation": operation})
    assert (error.status, error.code) == (400, "INVALID_FILTER")


def test_since_and_until_are_both_inclusive():
    noon = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
    for minutes in (-1, 0, 1, 2):
        add(timestamp=noon + timedelta(minutes=minutes), record_id=str(minutes))
    window = {"since": "2025-03-10T12:00:00Z", "until": "2025-03-10T12:01:00.000Z"}
    assert [e["recordId"] for e in entries(**window)] == ["1", "0"]
    # Another offset names the same instants.
    window = {"since": "2025-03-10T13:00:00+01:00", "until": "2025-03-10T13:01:00+01:00"}
    assert [e["recordId"] for e in entries(**window)] == ["1", "0"]
    # A bare date is midnight UTC: until that date ends before the day starts.
    assert entries(until="2025-03-10") == []
    assert len(entries(since="2025-03-10", until="2025-03-11")) == 4


def test_order_asc_lists_oldest_first(trail):
    assert [e["tableName"] for e in entries(order="asc")][-1] == "test_labels"
    assert entries(order="desc")[0]["tableName"] == "test_labels"


@pytest.mark.parametrize(
    ("query", "code", "message"),
    [
        ({"operation": "MERGE"}, "INVALID_FILTER", None),
        ({"severity": "urgent"}, "INVALID_FILTER", None),
        ({"since": "yesterday"}, "INVALID_FILTER", "Invalid 'since': must be an ISO-8601 date"),
        ({"until": "soon"}, "INVALID_FILTER", "Invalid 'until': must be an ISO-8601 date"),
        ({"until": "1h"}, "INVALID_FILTER", "Invalid 'until': must be an ISO-8601 date"),
        (
            {"since": "2025-02-01", "until": "2025-01-01"},
            "INVALID_FILTER",
            "'since' must be before 'until'",
        ),
        (
            {"since": "2025-02-01", "until": "2025-02-01"},
            "INVALID_FILTER",
            "'since' must be before 'until'",
        ),
        ({"order": "sideways"}, "INVALID_FILTER", "Invalid 'order': must be 'asc' or 'desc'"),
        (
            {"direction": "up"},
            "INVALID_FILTER",
            "Invalid 'direction': must be 'after' or 'before'",
        ),
        (
            {"order": "asc", "direction": "after"},
            "INVALID_FILTER",
            "'order' cannot be combined with 'direction'",
        ),
        ({"recordId": "1"}, "INVALID_FILTER", "'recordId' requires 'tableName'"),
        ({"search": "x" * 1001}, "INVALID_FILTER", "Query parameter exceeds maximum length"),
        ({"tenantId": "acme"}, "INVALID_ID", None),
        ({"around": "42"}, "INVALID_ID", None),
        (
            {"around": str(uuid.uuid4()), "direction": "before"},
            "INVALID_FILTER",
            "'around' cannot be combined with 'cursor', 'direction', or 'order'",
        ),
        ({"limit": "0"}, "INVALID_LIMIT", "Invalid 'limit': must be a positive integer (max 1000)"),
        (
            {"limit": "-3"},
            "INVALID_LIMIT",
            "Invalid 'limit': must be a positive integer (max 1000)",
        ),
        (
            {"limit": "many"},
            "INVALID_LIMIT",
            "Invalid 'limit': must be a positive integer (max 1000)",
        ),
        ({"cursor": "bm90IGEgY3Vyc29y"}, "INVALID_CURSOR", None),
        (
            {"cursor": base64.b64encode(b'{"t":"2025-01-01T00:00:00Z"}').decode()},
            "INVALID_CURSOR",
            None,
        ),
        (
            {"cursor": base64.b64encode(b'{"t":"2025-01-01T00:00:00Z","i":"x"}').decode()},
            "INVALID_CURSOR",
            None,
        ),
    ],
)
def test_bad_filters_are_400s_with_a_message(query, code, message):
    error = refused("GET", "/logs", query=query)
    assert (error.status, error.code) == (400, code)
    assert error.error
    if message is not None:
        assert error.error == message


# --- paging ---------------------------------------------------------------------------------------


def test_keyset_pages_walk_the_whole_trail_once(series):
    first = logs(limit=3)
    assert ids(first) == series[:3]
    assert first["hasNextPage"] is True and cursor_id(first["nextCursor"]) == series[2]
    # The first page has nothing before it.
    assert "prevCursor" not in first and "hasPrevPage" not in first

    second = logs(limit=3, cursor=first["nextCursor"])
    assert ids(second) == series[3:6]
    assert (second["hasNextPage"], second["hasPrevPage"]) == (True, True)
    assert cursor_id(second["prevCursor"]) == series[3]
    assert cursor_id(second["nextCursor"]) == series[5]

    last = logs(limit=3, cursor=second["nextCursor"], direction="after")
    assert ids(last) == series[6:]
    assert last["hasNextPage"] is False and "nextCursor" not in last
    assert last["hasPrevPage"] is True and cursor_id(last["prevCursor"]) == series[6]


def test_a_cursor_past_the_end_is_an_empty_page(series):
    last = logs(limit=7)
    assert ids(last) == series and last["hasNextPage"] is False
    beyond = logs(cursor=logs(limit=6)["nextCursor"], limit=1)
    assert ids(beyond) == series[6:]
    end = logs(cursor=beyond["prevCursor"], limit=5)
    assert end == {"entries": [], "hasNextPage": False, "hasPrevPage": True}


def test_direction_before_walks_back_to_the_start(series):
    # Forward to the last page, then back with prevCursor and direction=before.
    body = logs(limit=2)
    while body["hasNextPage"]:
        body = logs(limit=2, cursor=body["nextCursor"])
    assert ids(body) == series[6:]
    walked_back = [ids(body)]
    while body.get("hasPrevPage"):
        body = logs(limit=2, cursor=body["prevCursor"], direction="before")
        # Shown newest first; reached from a cursor, so an older page follows it.
        assert body["hasNextPage"] is True
        assert cursor_id(body["nextCursor"]) == body["entries"][-1]["id"]
        walked_back.insert(0, ids(body))
    assert walked_back == [series[0:2], series[2:4], series[4:6], series[6:]]
    # The start: nothing newer, so neither prevCursor nor hasPrevPage.
    assert "prevCursor" not in body and "hasPrevPage" not in body


def test_a_page_before_a_cursor_holds_the_entries_just_newer_than_it(series):
    cursor = logs(limit=4)["nextCursor"]
    assert cursor_id(cursor) == series[3]
    page = logs(cursor=cursor, direction="before", limit=2)
    assert ids(page) == series[1:3]
    assert cursor_id(page["prevCursor"]) == series[1] and page["hasPrevPage"] is True


def test_direction_before_without_a_cursor_starts_at_the_oldest(series):
    page = logs(direction="before", limit=2)
    assert ids(page) == series[5:7]
    assert page["hasNextPage"] is False and "nextCursor" not in page
    assert page["hasPrevPage"] is True and cursor_id(page["prevCursor"]) == series[5]
    newer = logs(direction="before", limit=2, cursor=page["prevCursor"])
    assert ids(newer) == series[3:5]


def test_order_asc_pages_oldest_first(series):
    first = logs(order="asc", limit=4)
    assert ids(first) == series[::-1][:4]
    rest = logs(order="asc", limit=4, cursor=first["nextCursor"])
    assert ids(rest) == series[::-1][4:] and rest["hasNextPage"] is False


def test_around_centres_on_the_anchor(series):
    anchor = series[3]
    # limit 5: the anchor, two newer, two older.
    body = logs(around=anchor, limit=5)
    assert ids(body) == series[1:6]
    assert (body["hasNextPage"], body["hasPrevPage"]) == (True, True)
    assert cursor_id(body["nextCursor"]) == series[5]
    assert cursor_id(body["prevCursor"]) == series[1]
    # An even limit gives the odd one to the older side.
    assert ids(logs(around=anchor, limit=4)) == series[2:6]
    assert ids(logs(around=anchor, limit=2)) == series[3:5]
    only = logs(around=anchor, limit=1)
    assert ids(only) == [anchor] and (only["hasNextPage"], only["hasPrevPage"]) == (True, True)
    # Its cursors continue the trail both ways.
    assert ids(logs(cursor=body["nextCursor"])) == series[6:]
    assert ids(logs(cursor=body["prevCursor"], direction="before")) == series[:1]


def test_around_the_ends_of_the_trail(series):
    newest = logs(around=series[0], limit=3)
    assert ids(newest) == series[:2]
    assert newest["hasNextPage"] is True
    assert "prevCursor" not in newest and "hasPrevPage" not in newest
    oldest = logs(around=series[6], limit=3)
    assert ids(oldest) == series[5:]
    assert oldest["hasNextPage"] is False and "nextCursor" not in oldest
    assert oldest["hasPrevPage"] is True


def test_around_keeps_the_filters_for_the_neighbours():
    base = timezone.now() - timedelta(hours=1)
    made = [
        add(timestamp=base - timedelta(minutes=n), table_name=table, record_id=str(n))
        for n, table in enumerate(["test_invoices", "test_labels", "test_invoices", "test_labels"])
    ]
    body = logs(around=str(made[2].pk), tableName="test_invoices", limit=3)
    assert [e["recordId"] for e in body["entries"]] == ["0", "2"]


def test_around_an_unknown_entry_is_an_empty_page(series):
    assert logs(around=str(uuid.uuid4())) == {"entries": [], "hasNextPage": False}


def test_a_page_holds_at_most_250_whatever_the_limit():
    inserts(260)
    for limit in (None, "1000", "5000", "1e9"):
        body = logs(**({} if limit is None else {"limit": limit}))
        assert len(body["entries"]) == 250 and body["hasNextPage"] is True
        assert body["entries"][0]["recordId"] == "259"
    rest = logs(limit="5000", cursor=body["nextCursor"])
    assert len(rest["entries"]) == 10 and rest["hasNextPage"] is False
    assert len(entries(limit="7.9")) == 7


def test_one_entry_by_id_and_isolation_by_tenant(trail, tenant, other_tenant):
    with run_as(tenant):
        entry = AuditLog.objects.get(operation="UPDATE")
    body = ok(call("audit", "GET", f"/logs/{entry.pk}"))
    assert (body["id"], body["operation"]) == (str(entry.pk), "UPDATE")
    assert body["timestamp"] == iso_millis(entry.timestamp)
    assert body == entries(operation="UPDATE")[0]
    assert ok(call("audit", "GET", f"/logs/{entry.pk}", query={"tenantId": tenant.pk}))
    error = refused("GET", f"/logs/{entry.pk}", query={"tenantId": other_tenant.pk})
    assert (error.status, error.code, error.error) == (404, "NOT_FOUND", "Audit log not found")
    error = refused("GET", f"/logs/{uuid.uuid4()}")
    assert (error.status, error.error) == (404, "Audit log not found")
    error = refused("GET", "/logs/42")
    assert (error.status, error.code) == (400, "INVALID_ID")


# --- /stats ---------------------------------------------------------------------------------------


def day(days_ago: int, hour: int = 12) -> datetime:
    today = timezone.now().astimezone(UTC).date() - timedelta(days=days_ago)
    return datetime(today.year, today.month, today.day, hour, tzinfo=UTC)


@pytest.fixture
def spread():
    """Entries on three days, one of them 40 days back."""
    return [
        add(timestamp=day(40), table_name="users", actor_id="alice", severity="low"),
        add(timestamp=day(2), table_name="orders", operation="UPDATE", actor_id="bob"),
        add(
            timestamp=day(2, hour=13),
            table_name="orders",
            operation="DELETE",
            actor_id="alice",
            severity="critical",
        ),
        add(timestamp=day(1), table_name="orders"),
    ]


def stats(**query) -> dict:
    return ok(call("audit", "GET", "/stats", query=query))


def test_stats_cover_all_time_and_list_only_what_occurred(spread):
    body = stats()
    assert body == {
        "totalLogs": 4,
        "tablesAudited": 2,
        "eventsPerDay": [
            {"date": day(40).date().isoformat(), "count": 1},
            {"date": day(2).date().isoformat(), "count": 2},
            {"date": day(1).date().isoformat(), "count": 1},
        ],
        "topActors": [{"actorId": "alice", "count": 2}, {"actorId": "bob", "count": 1}],
        "topTables": [{"tableName": "orders", "count": 3}, {"tableName": "users", "count": 1}],
        "operationBreakdown": {"INSERT": 2, "UPDATE": 1, "DELETE": 1},
        "severityBreakdown": {"low": 1, "critical": 1},
    }
    # days and top are no parameters of the protocol: they change nothing.
    assert stats(days="7", top="1") == body


def test_stats_since_is_inclusive_and_until_exclusive(spread):
    body = stats(since=spread[1].timestamp.isoformat(), until=spread[3].timestamp.isoformat())
    assert body == {
        "totalLogs": 2,
        "tablesAudited": 1,
        "eventsPerDay": [{"date": day(2).date().isoformat(), "count": 2}],
        "topActors": [{"actorId": "alice", "count": 1}, {"actorId": "bob", "count": 1}],
        "topTables": [{"tableName": "orders", "count": 2}],
        "operationBreakdown": {"UPDATE": 1, "DELETE": 1},
        "severityBreakdown": {"critical": 1},
    }
    assert stats(since=iso_millis(spread[3].timestamp))["totalLogs"] == 1
    assert stats(until=iso_millis(spread[0].timestamp)) == {
        "totalLogs": 0,
        "tablesAudited": 0,
        "eventsPerDay": [],
        "topActors": [],
        "topTables": [],
        "operationBreakdown": {},
        "severityBreakdown": {},
    }


def test_stats_list_the_days_of_entries_long_past():
    long_ago = day(800)
    add(timestamp=long_ago, table_name="users")
    add(timestamp=day(3), table_name="users")
    listed = [{"date": long_ago.date().isoformat(), "count": 1}]
    recent = [{"date": day(3).date().isoformat(), "count": 1}]
    assert stats()["eventsPerDay"] == listed + recent
    assert (
        stats(since=(long_ago - timedelta(days=1)).isoformat())["eventsPerDay"] == listed + recent
    )
    window = stats(until=(long_ago + timedelta(days=100)).isoformat())
    assert (window["totalLogs"], window["eventsPerDay"]) == (1, listed)


def test_stats_for_every_tenant_and_for_one(trail, tenant):
    body = stats()
    assert (body["totalLogs"], body["tablesAudited"]) == (4, 2)
    assert body["operationBreakdown"] == {"INSERT": 3, "UPDATE": 1}
    assert body["severityBreakdown"] == {"high": 1}
    assert {a["actorId"]: a["count"] for a in body["topActors"]} == {"user-a": 2, "user-b": 1}
    assert body["topTables"][0] == {"tableName": "test_invoices", "count": 3}
    today = timezone.now().astimezone(UTC).date().isoformat()
    assert body["eventsPerDay"] == [{"date": today, "count": 4}]
    mine = stats(tenantId=tenant.pk)
    assert mine["totalLogs"] == 2
    assert [a["actorId"] for a in mine["topActors"]] == ["user-a"]
    assert mine["operationBreakdown"] == {"INSERT": 1, "UPDATE": 1}


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"since": "yesterday"}, "INVALID_FILTER"),
        ({"since": "7d"}, "INVALID_FILTER"),
        ({"until": "soon"}, "INVALID_FILTER"),
        ({"since": "2025-02-01", "until": "2025-01-01"}, "INVALID_FILTER"),
        ({"since": "2025-01-01", "until": "2025-01-01"}, "INVALID_FILTER"),
        ({"since": "2" * 1001}, "INVALID_FILTER"),
        ({"tenantId": "acme"}, "INVALID_ID"),
    ],
)
def test_stats_refuse_bad_windows(query, code):
    error = refused("GET", "/stats", query=query)
    assert (error.status, error.code) == (400, code)


# --- /enrichments ---------------------------------------------------------------------------------


def test_enrichments_list_every_rule_grouped_by_table_and_operation():
    assert ok(call("audit", "GET", "/enrichments")) == []
    audit.enrich("testapp.Invoice", "update", label="Invoice paid", severity="high")
    audit.enrich("*", "DELETE", severity="critical", notify=False, redact=["secret"])
    audit.enrich("test_invoices", "UPDATE", compliance=["soc2", "gdpr"], include=["paid"])
    audit.enrich("test_labels", "*", description=lambda context: "ignored", notify=True)
    assert ok(call("audit", "GET", "/enrichments")) == [
        {
            "table": "test_invoices",
            "operation": "UPDATE",
            "label": "Invoice paid",
            "severity": "high",
        },
        {
            "table": "test_invoices",
            "operation": "UPDATE",
            "compliance": ["soc2", "gdpr"],
            "include": ["paid"],
        },
        {
            "table": "*",
            "operation": "DELETE",
            "severity": "critical",
            "notify": False,
            "redact": ["secret"],
        },
        {"table": "test_labels", "operation": "*", "notify": True},
    ]


# --- DELETE /logs ---------------------------------------------------------------------------------


@pytest.fixture
def aged(tenant, other_tenant):
    """Entries 100 days old in both tenants and without one, and two recent ones."""
    old = timezone.now() - timedelta(days=100)
    made = {
        "old_invoice": add(timestamp=old, tenant_id=tenant.pk),
        "old_other": add(timestamp=old, tenant_id=other_tenant.pk),
        "old_label": add(timestamp=old, table_name="test_labels"),
        "new_invoice": add(tenant_id=tenant.pk),
        "new_label": add(table_name="test_labels"),
    }
    return {name: str(entry.pk) for name, entry in made.items()}


def test_purge_deletes_only_entries_older_than_before(aged):
    before = (timezone.now() - timedelta(days=30)).isoformat()
    assert ok(call("audit", "DELETE", "/logs", body={"before": before})) == {"deletedCount": 3}
    assert set(newest_first()) == {aged["new_invoice"], aged["new_label"]}
    assert ok(call("audit", "DELETE", "/logs", body={"before": before})) == {"deletedCount": 0}


def test_purge_of_one_table(aged):
    before = (timezone.now() - timedelta(days=30)).isoformat()
    body = {"before": before, "tableName": "test_labels"}
    assert ok(call("audit", "DELETE", "/logs", body=body)) == {"deletedCount": 1}
    assert aged["old_label"] not in newest_first()
    assert len(newest_first()) == 4
    body = {"before": before, "tableName": "testapp.Invoice"}
    assert ok(call("audit", "DELETE", "/logs", body=body)) == {"deletedCount": 2}
    assert set(newest_first()) == {aged["new_invoice"], aged["new_label"]}


def test_purge_with_an_empty_table_name_purges_every_table(aged):
    body = {"before": iso_millis(timezone.now() - timedelta(days=30)), "tableName": ""}
    assert ok(call("audit", "DELETE", "/logs", body=body)) == {"deletedCount": 3}


def test_purge_needs_an_admin_session(aged):
    with pytest.raises(PermissionError):
        call(
            "audit",
            "DELETE",
            "/logs",
            body={"before": timezone.now().isoformat()},
            permissions=("read", "write"),
        )
    assert count() == 5


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (None, "Request body is required"),
        (["2099-01-01"], "Request body is required"),
        ({}, "Missing required field: before"),
        ({"before": 4102444800000}, "Missing required field: before"),
        ({"before": "someday"}, "Invalid date for 'before' field"),
        ({"before": ""}, "Invalid date for 'before' field"),
        ({"before": "2099-01-01", "tableName": "x" * 1001}, "tableName exceeds maximum length"),
        ({"before": "2099-01-01", "tableName": "test\x00labels"}, None),
    ],
)
def test_purge_refuses_bad_bodies_and_deletes_nothing(aged, body, message):
    error = refused("DELETE", "/logs", body=body)
    assert (error.status, error.code) == (400, "INVALID_BODY")
    if message is not None:
        assert error.error == message
    assert count() == 5


def test_purge_refuses_a_tenant_id_rather_than_purge_every_tenant(aged, tenant):
    error = refused("DELETE", "/logs", query={"tenantId": tenant.pk}, body={"before": "2099-01-01"})
    assert (error.status, error.code) == (400, "INVALID_FILTER")
    assert count() == 5


# --- /export --------------------------------------------------------------------------------------


def test_export_defaults_to_csv_with_camel_case_columns_newest_first(trail):
    response = call("audit", "GET", "/export")
    assert isinstance(response, StreamingHttpResponse)
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    today = timezone.now().astimezone(UTC).date().isoformat()
    assert response["Content-Disposition"] == f'attachment; filename="audit-export-{today}.csv"'
    assert response["Cache-Control"] == "no-cache"
    assert json.loads(response["X-Audit-Chain-Head"])["algorithm"] == "sha256"
    text = streamed(response).decode()
    assert "\r\n" not in text
    header, *rows = list(csv.reader(io.StringIO(text)))
    assert header == CSV_HEADER
    assert header[:5] == ["id", "timestamp", "tableName", "operation", "recordId"]
    assert header[-2:] == ["correlationId", "tenantId"]
    assert [row[0] for row in rows] == [e["id"] for e in entries()]
    paid = dict(zip(header, rows[2], strict=True))
    assert (paid["operation"], paid["label"], paid["actorId"]) == (
        "UPDATE",
        "Invoice paid",
        "user-a",
    )
    assert paid["timestamp"] == entries()[2]["timestamp"]
    assert json.loads(paid["diff"]) == {"changedFields": ["paid"]}
    assert json.loads(paid["compliance"]) == ["soc2"]
    assert paid["description"] == "" and paid["notify"] == ""


def test_export_json_is_an_array_of_the_entries_only(trail):
    response = call(
        "audit", "GET", "/export", query={"format": "json", "tableName": "test_invoices"}
    )
    assert response["Content-Type"].startswith("application/json")
    assert response["Content-Disposition"].endswith('.json"')
    assert response["Cache-Control"] == "no-cache"
    assert "X-Audit-Chain-Head" in response
    exported = json.loads(streamed(response))
    # The same entries, in the same shape, as /logs shows them; no trailing chain head.
    assert exported == entries(tableName="test_invoices")
    assert [e["operation"] for e in exported] == ["INSERT", "UPDATE", "INSERT"]


def test_export_order_asc_lists_oldest_first(trail):
    response = call("audit", "GET", "/export", query={"format": "json", "order": "asc"})
    assert [e["id"] for e in json.loads(streamed(response))] == [e["id"] for e in entries()][::-1]


def test_export_is_not_capped_by_the_page_size_and_stops_at_its_limit():
    inserts(300)
    response = call("audit", "GET", "/export", query={"format": "json"})
    assert len(json.loads(streamed(response))) == 300
    response = call("audit", "GET", "/export", query={"format": "json", "limit": "10"})
    # The newest ten, as the published server's export of a limit holds.
    rows = json.loads(streamed(response))
    assert [row["recordId"] for row in rows] == [str(n) for n in range(299, 289, -1)]
    csv_rows = streamed(call("audit", "GET", "/export", query={"limit": "3"})).splitlines()
    assert len(csv_rows) == 4


def test_export_narrowed_to_a_tenant_holds_its_rows_only(trail, tenant):
    response = call("audit", "GET", "/export", query={"format": "json", "tenantId": tenant.pk})
    rows = json.loads(streamed(response))
    assert [r["tenantId"] for r in rows] == [str(tenant.pk)] * 2
    head = json.loads(response["X-Audit-Chain-Head"])
    assert [c["chain"] for c in head["chains"]] == [str(tenant.pk)]


def test_export_applies_the_filters(trail):
    response = call("audit", "GET", "/export", query={"operation": "UPDATE"})
    header, *rows = list(csv.reader(io.StringIO(streamed(response).decode())))
    assert len(rows) == 1 and rows[0][header.index("operation")] == "UPDATE"


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"format": "xml"}, "INVALID_FILTER"),
        ({"format": "ndjson"}, "INVALID_FILTER"),
        ({"operation": "MERGE"}, "INVALID_FILTER"),
        ({"limit": "0"}, "INVALID_LIMIT"),
        ({"tenantId": "acme"}, "INVALID_ID"),
    ],
)
def test_export_refuses_bad_input(query, code):
    error = refused("GET", "/export", query=query)
    assert (error.status, error.code) == (400, code)
