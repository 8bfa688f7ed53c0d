"""better_core.celery: header propagators carried from the sender to the task, in eager mode."""

import logging
from contextvars import ContextVar
from typing import Any

import pytest
from celery import Celery

from better_core import celery as core_celery
from better_core.celery import HeaderPropagator

app = Celery("better-core-test", set_as_current=False)
app.conf.task_always_eager = True
log: list[tuple[str, ...]] = []
current: ContextVar[str | None] = ContextVar("current", default=None)


@app.task(name="better_core.test.seen")
def seen() -> str | None:
    log.append(("body", str(current.get())))
    return current.get()


@app.task(name="better_core.test.fails")
def fails() -> None:
    raise RuntimeError("on purpose")


def propagator(header: str, uses_database: bool = False, **overrides: Any) -> HeaderPropagator:
    def enter(task: Any, value: Any) -> Any:
        log.append(("enter", header, str(value)))
        return current.set(value)

    def exit(task: Any, token: Any, state: str | None) -> None:
        log.append(("exit", header, str(state)))
        current.reset(token)

    fields = {"capture": lambda: f"{header}-value", "enter": enter, "exit": exit}
    return HeaderPropagator(header, uses_database=uses_database, **{**fields, **overrides})


@pytest.fixture(autouse=True)
def registry(monkeypatch):
    """Only this module's propagators, on the receivers the apps connect."""
    monkeypatch.setattr(core_celery, "_propagators", {})
    core_celery.connect()
    log.clear()


def test_headers_are_captured_unless_set_or_empty():
    core_celery.register(propagator("x-db", uses_database=True))
    core_celery.register(propagator("x-plain"))
    core_celery.register(propagator("x-none", capture=lambda: None))
    headers = {"x-plain": "explicit"}
    core_celery.add_headers(headers=headers)
    assert headers == {"x-plain": "explicit", "x-db": "x-db-value"}
    core_celery.add_headers(headers=None)  # a message without headers is left alone
    core_celery.unregister("x-db")
    core_celery.unregister("x-unknown")
    assert [p.header for p in core_celery.propagators()] == ["x-plain", "x-none"]


def test_database_scopes_are_entered_last_and_left_first():
    core_celery.register(propagator("x-db", uses_database=True))
    core_celery.register(propagator("x-plain"))
    result = seen.apply(headers={"x-db": "d", "x-plain": "p"})
    assert result.get() == "d"
    assert log == [
        ("enter", "x-plain", "p"),
        ("enter", "x-db", "d"),
        ("body", "d"),
        ("exit", "x-db", "SUCCESS"),
        ("exit", "x-plain", "SUCCESS"),
    ]
    assert current.get() is None


def test_missing_header_is_entered_as_none_and_failure_state_reaches_exit():
    core_celery.register(propagator("x-plain"))
    assert fails.apply().state == "FAILURE"
    assert log == [("enter", "x-plain", "None"), ("exit", "x-plain", "FAILURE")]


def test_a_failing_propagator_does_not_stop_the_others(caplog):
    def broken(task: Any, value: Any) -> Any:
        raise ValueError("broken on purpose")

    core_celery.register(propagator("x-broken", enter=broken))
    core_celery.register(propagator("x-skipped", enter=lambda task, value: None))
    core_celery.register(propagator("x-plain"))
    with caplog.at_level(logging.ERROR, logger="better_core.celery"):
        assert seen.apply(headers={"x-plain": "p"}).get() == "p"
    # A propagator that opened nothing (None) is not closed.
    assert log == [("enter", "x-plain", "p"), ("body", "p"), ("exit", "x-plain", "SUCCESS")]
    assert "Opening the x-broken scope of task better_core.test.seen[" in caplog.text
