"""audit.stats(): totals, per-day series, top lists and breakdowns over a window of days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

import better_audit as audit
from better_tenant import run_as, run_as_system
from tests.audit.test_query import add

pytestmark = pytest.mark.django_db


def today_at(days_ago: int, hour: int = 12) -> datetime:
    day = timezone.now().astimezone(UTC).date() - timedelta(days=days_ago)
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


@pytest.fixture
def trail():
    for _ in range(3):
        add(timestamp=today_at(0, hour=0), table_name="users", actor_id="alice", severity="low")
        add(timestamp=today_at(2), table_name="orders", actor_id="bob", operation="UPDATE")
    add(timestamp=today_at(2), table_name="orders", actor_id="alice", operation="DELETE")
    add(timestamp=today_at(5), table_name="payments", severity="critical")
    add(timestamp=today_at(50), table_name="archive", actor_id="carol", severity="high")


def stats(**kwargs):
    with run_as_system():
        return audit.stats(**kwargs)


def test_window_totals_tables_and_breakdowns(trail):
    report = stats(days=30)
    assert report["days"] == 30
    assert report["total_logs"] == 8
    assert report["tables_audited"] == 3
    assert report["operation_breakdown"] == {"INSERT": 4, "UPDATE": 3, "DELETE": 1}
    assert report["severity_breakdown"] == {"low": 3, "medium": 0, "high": 0, "critical": 1}
    assert report["top_tables"] == [
        {"table_name": "orders", "count": 4},
        {"table_name": "users", "count": 3},
        {"table_name": "payments", "count": 1},
    ]


def test_top_actors_skip_entries_without_an_actor_and_respect_top(trail):
    report = stats(days=30, top=2)
    assert report["top_actors"] == [
        {"actor_id": "alice", "count": 4},
        {"actor_id": "bob", "count": 3},
    ]
    assert len(report["top_tables"]) == 2


def test_events_per_day_lists_every_day_of_the_window_oldest_first(trail):
    series = stats(days=7)["events_per_day"]
    assert len(series) == 7
    assert series[-1] == {"date": today_at(0).date().isoformat(), "count": 3}
    assert series[-3] == {"date": today_at(2).date().isoformat(), "count": 4}
    assert series[-6] == {"date": today_at(5).date().isoformat(), "count": 1}
    assert sum(day["count"] for day in series) == 8
    assert [d["date"] for d in series] == sorted(d["date"] for d in series)


def test_all_time_counts_everything_and_charts_the_last_year(trail):
    report = stats(days=None)
    assert report["total_logs"] == 9 and report["tables_audited"] == 4
    assert report["since"] is None
    assert len(report["events_per_day"]) == 365
    assert sum(day["count"] for day in report["events_per_day"]) == 9


def test_empty_trail():
    report = stats(days=1)
    assert report["total_logs"] == 0 and report["top_actors"] == []
    assert report["events_per_day"] == [{"date": today_at(0).date().isoformat(), "count": 0}]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"days": 0}, "days must be from 1 to 365"),
        ({"days": 366}, "days must be from 1 to 365"),
        ({"days": "30"}, "days must be a whole number"),
        ({"top": 0}, "top must be a whole number of at least 1"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        audit.stats(**kwargs)


def test_stats_follow_the_tenant_scope(tenant, other_tenant):
    add(tenant_id=tenant.pk, table_name="mine")
    add(tenant_id=other_tenant.pk, table_name="theirs")
    with run_as(tenant):
        report = audit.stats()
    assert report["total_logs"] == 1
    assert report["top_tables"] == [{"table_name": "mine", "count": 1}]
