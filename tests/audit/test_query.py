"""audit.query(): every filter, validation, ordering, limits, keyset cursors and tenant scope."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.conf import settings
from django.db.models import QuerySet
from django.test import override_settings
from django.utils import timezone

import better_audit as audit
from better_audit.models import AuditLog
from better_audit.queries import AuditQuery, QueryResult
from better_tenant import run_as, run_as_system
from tests.support.audit import add_rows

pytestmark = pytest.mark.django_db

NOW = timezone.now()


def add(**values: Any) -> AuditLog:
    """One audit row written in system mode (any tenant), with sensible defaults."""
    row = {
        "timestamp": NOW,
        "table_name": "projects",
        "operation": "INSERT",
        "record_id": "1",
        **values,
    }
    [entry] = add_rows(AuditLog(**row))
    return entry


def ids(entries: Any) -> list[uuid.UUID]:
    return [entry.id for entry in entries]


def system(q: AuditQuery) -> QueryResult:
    with run_as_system():
        return q.list()


@pytest.fixture
def trail() -> dict[str, AuditLog]:
    return {
        "old": add(timestamp=NOW - timedelta(days=40), table_name="users", record_id="7"),
        "week": add(
            timestamp=NOW - timedelta(days=3),
            table_name="users",
            operation="UPDATE",
            record_id="7",
            actor_id="user-1",
            severity="high",
            compliance=["gdpr", "soc2"],
            label="Profile updated",
        ),
        "hour": add(
            timestamp=NOW - timedelta(minutes=30),
            table_name="payments",
            operation="DELETE",
            record_id="9",
            actor_id="user-2",
            severity="critical",
            compliance=["pci", "soc2"],
            description="Refund VOIDED by support",
        ),
        "now": add(
            timestamp=NOW,
            table_name="projects",
            record_id="7",
            actor_id="user-1",
            severity="low",
            compliance=["gdpr"],
        ),
    }


def test_query_is_exported_lazily_as_a_function():
    assert callable(audit.query)
    assert isinstance(audit.query(), AuditQuery)


def test_without_filters_lists_everything_newest_first(trail):
    result = system(audit.query())
    assert ids(result.entries) == ids([trail["now"], trail["hour"], trail["week"], trail["old"]])
    assert result.next_cursor is None


def test_resource_actor_and_record(trail):
    assert ids(system(audit.query().resource("users")).entries) == ids(
        [trail["week"], trail["old"]]
    )
    assert ids(system(audit.query().actor("user-1")).entries) == ids([trail["now"], trail["week"]])
    both = audit.query().resource("users").record(7)
    assert ids(system(both).entries) == ids([trail["week"], trail["old"]])
    assert system(audit.query().record("8")).entries == []


def test_resource_accepts_a_model_label():
    add(table_name="test_invoices")
    add(table_name="projects")
    result = system(audit.query().resource("testapp.Invoice"))
    assert [e.table_name for e in result.entries] == ["test_invoices"]


def test_operation_is_case_insensitive_and_takes_several(trail):
    assert ids(system(audit.query().operation("delete")).entries) == ids([trail["hour"]])
    several = audit.query().operation("UPDATE", "DELETE")
    assert ids(system(several).entries) == ids([trail["hour"], trail["week"]])


def test_severity_takes_several_levels(trail):
    result = system(audit.query().severity("high", "critical"))
    assert ids(result.entries) == ids([trail["hour"], trail["week"]])


def test_compliance_tags_use_and_semantics_with_array_containment(trail):
    assert ids(system(audit.query().compliance("gdpr")).entries) == ids(
        [trail["now"], trail["week"]]
    )
    assert ids(system(audit.query().compliance("gdpr", "soc2")).entries) == ids([trail["week"]])
    chained = audit.query().compliance("soc2").compliance("pci")
    assert ids(system(chained).entries) == ids([trail["hour"]])
    assert "@>" in str(chained.queryset.query)


def test_search_matches_label_or_description_ignoring_case(trail):
    assert ids(system(audit.query().search("profile")).entries) == ids([trail["week"]])
    assert ids(system(audit.query().search("voided")).entries) == ids([trail["hour"]])
    assert system(audit.query().search("nothing like this")).entries == []


@pytest.mark.parametrize(
    ("since", "expected"),
    [("1h", ["now", "hour"]), ("24h", ["now", "hour"]), ("7d", ["now", "hour", "week"])],
)
def test_since_durations(trail, since, expected):
    assert ids(system(audit.query().since(since)).entries) == ids([trail[k] for k in expected])


def test_since_accepts_an_iso_date(trail):
    start = (NOW - timedelta(days=10)).date().isoformat()
    assert ids(system(audit.query().since(start)).entries) == ids(
        [trail["now"], trail["hour"], trail["week"]]
    )


def test_since_rejects_a_bad_value():
    with pytest.raises(ValueError, match="neither a duration"):
        audit.query().since("yesterday")


def test_between_bounds_are_inclusive_and_a_bare_end_date_covers_the_day(trail):
    week = trail["week"].timestamp
    exact = audit.query().between(week, week)
    assert ids(system(exact).entries) == ids([trail["week"]])
    day = week.astimezone(UTC).date().isoformat()
    assert ids(system(audit.query().between(None, day)).entries) == ids(
        [trail["week"], trail["old"]]
    )
    open_end = audit.query().between((NOW - timedelta(hours=2)).isoformat(), None)
    assert ids(system(open_end).entries) == ids([trail["now"], trail["hour"]])


def test_since_and_between_are_mutually_exclusive():
    with pytest.raises(ValueError, match=r"since\(\) and between\(\) cannot be combined"):
        audit.query().since("1h").between("2025-01-01", None)
    with pytest.raises(ValueError, match=r"since\(\) and between\(\) cannot be combined"):
        audit.query().between("2025-01-01", None).since("1h")


def test_between_validates_its_bounds():
    with pytest.raises(ValueError, match="needs a start, an end, or both"):
        audit.query().between(None, None)
    with pytest.raises(ValueError, match="is after end"):
        audit.query().between("2025-02-01", "2025-01-01")
    with pytest.raises(ValueError, match="not an ISO 8601"):
        audit.query().between("last tuesday", None)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda q: q.operation("UPSERT"), "operation must be one of INSERT, UPDATE, DELETE"),
        (lambda q: q.severity("urgent"), "severity must be one of low, medium, high, critical"),
        (lambda q: q.order("newest"), "order must be one of asc, desc"),
        (lambda q: q.compliance(), "one or more non-empty tags"),
        (lambda q: q.actor(""), "actor id"),
        (lambda q: q.search("  "), "non-empty string"),
        (lambda q: q.limit(0), "whole number from 1"),
    ],
)
def test_invalid_values_say_what_is_allowed(call, message):
    with pytest.raises(ValueError, match=message):
        call(audit.query())


def test_limit_above_max_query_limit_names_the_setting():
    audit.query().limit(1000)
    with pytest.raises(ValueError, match=r"exceeds BETTER_AUDIT\['MAX_QUERY_LIMIT'\] \(1000\)"):
        audit.query().limit(1001)
    lower = {**settings.BETTER_AUDIT, "MAX_QUERY_LIMIT": 5}
    with override_settings(BETTER_AUDIT=lower), pytest.raises(ValueError, match=r"\(5\)"):
        audit.query().limit(6)


def test_order_ascending(trail):
    result = system(audit.query().order("asc"))
    assert ids(result.entries) == ids([trail["old"], trail["week"], trail["hour"], trail["now"]])


@pytest.mark.parametrize("direction", ["desc", "asc"])
def test_cursor_pages_through_ties_without_gaps_or_repeats(direction):
    moment = datetime(2025, 3, 1, 12, tzinfo=UTC)
    made = [add(timestamp=moment, record_id=str(n)) for n in range(5)]
    made += [add(timestamp=moment + timedelta(seconds=n), record_id=f"s{n}") for n in range(1, 4)]
    q = audit.query().order(direction).limit(3)
    seen, cursor, pages = [], None, 0
    while True:
        result = system(q.after(cursor))
        pages += 1
        seen += result.entries
        cursor = result.next_cursor
        if cursor is None:
            break
    assert pages == 3
    expected = sorted(made, key=lambda e: (e.timestamp, e.id), reverse=direction == "desc")
    assert ids(seen) == ids(expected)


def test_cursor_is_opaque_urlsafe_and_checked():
    for n in range(3):
        add(record_id=str(n), timestamp=NOW - timedelta(seconds=n))
    cursor = system(audit.query().limit(1)).next_cursor
    assert cursor and set(cursor) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    )
    with pytest.raises(ValueError, match="pages in 'desc' order but the query is 'asc'"):
        audit.query().order("asc").after(cursor)
    with pytest.raises(ValueError, match="not a cursor returned by list"):
        audit.query().after("not-a-cursor")


def test_count_ignores_limit_and_cursor(trail):
    with run_as_system():
        assert audit.query().limit(1).count() == 4
        assert audit.query().compliance("soc2").count() == 2


def test_queryset_is_the_filtered_ordered_queryset(trail):
    qs = audit.query().severity("high").queryset
    assert isinstance(qs, QuerySet)
    assert qs.query.order_by == ("-timestamp", "-id")
    with run_as_system():
        assert list(qs) == [trail["week"]]


def test_iterating_walks_every_page():
    for n in range(7):
        add(record_id=str(n), timestamp=NOW - timedelta(seconds=n))
    with run_as_system():
        assert len(list(audit.query().limit(2))) == 7


def test_builder_calls_return_new_queries():
    base = audit.query().resource("users")
    narrowed = base.operation("DELETE")
    assert "DELETE" not in str(base.queryset.query)
    assert "DELETE" in str(narrowed.queryset.query)


def test_a_tenant_reads_only_its_own_trail(tenant, other_tenant):
    mine = add(tenant_id=tenant.pk, record_id="mine")
    add(tenant_id=other_tenant.pk, record_id="theirs")
    add(record_id="no tenant")
    with run_as(tenant):
        assert ids(audit.query().list().entries) == [mine.id]
    assert audit.query().list().entries == []
    with run_as_system():
        assert audit.query().count() == 3


# --- parity with @usebetterdev/audit-core 0.8.1 ---------------------------------------------------


def test_actor_takes_several_ids_and_calls_add_to_them(trail):
    both = ids([trail["now"], trail["hour"], trail["week"]])
    assert ids(system(audit.query().actor("user-1", "user-2")).entries) == both
    assert ids(system(audit.query().actor("user-1").actor("user-2", "user-1")).entries) == both
    assert ids(system(audit.query().actor(["user-2"])).entries) == ids([trail["hour"]])
    for bad in ((), ("",), ("user-1", None)):
        with pytest.raises(ValueError, match="actor\\(\\) takes one or more actor ids"):
            audit.query().actor(*bad)


def test_resource_narrows_to_a_record_and_a_later_call_replaces_it(trail):
    assert ids(system(audit.query().resource("users", 7)).entries) == ids(
        [trail["week"], trail["old"]]
    )
    assert system(audit.query().resource("users", "9")).entries == []
    replaced = audit.query().resource("users", "7").resource("payments")
    assert ids(system(replaced).entries) == ids([trail["hour"]])
    with pytest.raises(ValueError, match="record id or None"):
        audit.query().resource("users", "")


def test_until_is_exclusive_and_combines_with_since(trail):
    until = audit.query().until(trail["hour"].timestamp.isoformat())
    assert ids(system(until).entries) == ids([trail["week"], trail["old"]])
    window = until.since((NOW - timedelta(days=10)).isoformat())
    assert ids(system(window).entries) == ids([trail["week"]])
    assert ids(system(audit.query().until("1d")).entries) == ids([trail["week"], trail["old"]])
    with pytest.raises(ValueError, match="must be before until"):
        audit.query().until("30d").since("1d")
    with pytest.raises(ValueError, match="cannot be combined"):
        audit.query().until("1d").between(NOW - timedelta(days=5), None)
    with pytest.raises(ValueError, match="cannot be combined"):
        audit.query().between(NOW - timedelta(days=5), None).until("1d")
