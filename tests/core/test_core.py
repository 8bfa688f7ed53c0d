"""better_core: scopes and duration shorthands (settings: test_settings_schema)."""

import asyncio
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta

import pytest

from better_core.durations import parse_duration, parse_since
from better_core.scope import Scope

current: ContextVar[tuple] = ContextVar("current", default=())


class Push(Scope):
    def __init__(self, value):
        self.value = value

    def enter(self):
        self.token = current.set((*current.get(), self.value))
        return current.get()

    def exit(self, exc):
        current.reset(self.token)


def test_scope_as_context_manager_nests_and_restores():
    with Push("a") as outer:
        assert outer == ("a",)
        with Push("b") as inner:
            assert inner == ("a", "b")
        assert current.get() == ("a",)
    assert current.get() == ()


def test_scope_restores_on_error_and_one_instance_is_reentrant():
    scope = Push("x")
    with pytest.raises(KeyError), scope:
        with scope:
            assert current.get() == ("x", "x")
        raise KeyError
    assert current.get() == ()


def test_scope_decorates_sync_and_async_functions():
    @Push("d")
    def sync_fn():
        return current.get()

    @Push("d")
    async def async_fn():
        await asyncio.sleep(0)
        return current.get()

    async def both():
        async with Push("w"):
            return await async_fn(), current.get()

    assert sync_fn() == ("d",)
    assert sync_fn() == ("d",)
    assert asyncio.run(async_fn()) == ("d",)
    assert asyncio.run(both()) == (("w", "d"), ("w",))


@pytest.mark.parametrize(
    ("text", "delta"),
    [
        ("30min", timedelta(minutes=30)),
        ("24h", timedelta(hours=24)),
        ("7d", timedelta(days=7)),
        ("4w", timedelta(weeks=4)),
        ("90s", timedelta(seconds=90)),
    ],
)
def test_fixed_durations(text, delta):
    now = datetime(2025, 3, 31, 12, tzinfo=UTC)
    assert parse_duration(text).before(now) == now - delta


def test_calendar_durations_clamp_the_day():
    now = datetime(2025, 3, 31, 12, tzinfo=UTC)
    assert parse_duration("3m").before(now) == datetime(2024, 12, 31, 12, tzinfo=UTC)
    assert parse_duration("1m").before(now) == datetime(2025, 2, 28, 12, tzinfo=UTC)
    assert parse_duration("1y").before(datetime(2024, 2, 29, tzinfo=UTC)) == datetime(
        2023, 2, 28, tzinfo=UTC
    )


@pytest.mark.parametrize("bad", ["", "7", "d7", "7 days", "-1d", "0d", "1.5h", "7x"])
def test_bad_durations_say_what_is_accepted(bad):
    with pytest.raises(ValueError, match=r"min|positive"):
        parse_duration(bad)


def test_since_accepts_durations_and_iso_dates():
    now = datetime(2025, 1, 10, tzinfo=UTC)
    assert parse_since("1d", now) == datetime(2025, 1, 9, tzinfo=UTC)
    assert parse_since("2025-01-01").date().isoformat() == "2025-01-01"
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_since("yesterday")
