"""One scope object entered from two threads or tasks at once: each leaves its own entry."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from better_core.scope import Scope


class Recorder(Scope):
    """Records which thread entered and which thread left each entry."""

    def __init__(self, log: list[tuple[str, int, str]]) -> None:
        self.log = log

    def enter(self) -> int:
        self.number = len([event for event in self.log if event[0] == "enter"])
        self.owner = threading.current_thread().name
        self.log.append(("enter", self.number, self.owner))
        return self.number

    def exit(self, exc: BaseException | None) -> None:
        # The thread that leaves must be the one that entered.
        self.log.append(("exit", self.number, threading.current_thread().name))
        assert threading.current_thread().name == self.owner


def test_two_threads_interleave_on_one_scope_object():
    log: list[tuple[str, int, str]] = []
    shared = Recorder(log)
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, Any] = {}

    def first() -> None:
        with shared as number:
            seen["first"] = number
            first_in.set()
            second_in.wait(5)
        first_out.set()

    def second() -> None:
        first_in.wait(5)
        with shared as number:
            seen["second"] = number
            second_in.set()
            # The first thread leaves while this entry is still open.
            first_out.wait(5)

    threads = [threading.Thread(target=first, name="A"), threading.Thread(target=second, name="B")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert seen == {"first": 0, "second": 1}
    # Each entry left in the thread that made it (A leaves entry 0 while B's entry 1 is open).
    assert log == [("enter", 0, "A"), ("enter", 1, "B"), ("exit", 0, "A"), ("exit", 1, "B")]


def test_two_tasks_interleave_on_one_scope_object():
    log: list[tuple[str, int, str]] = []
    shared = Recorder(log)
    order: list[tuple[str, int]] = []

    async def task(name: str, start: float, hold: float) -> None:
        await asyncio.sleep(start)
        async with shared as number:
            order.append((name, number))
            await asyncio.sleep(hold)
        order.append((f"{name} out", number))

    async def main() -> None:
        # "first" enters first and leaves while "second" is still inside.
        await asyncio.gather(task("first", 0, 0.05), task("second", 0.01, 0.1))

    asyncio.run(main())
    assert order == [("first", 0), ("second", 1), ("first out", 0), ("second out", 1)]
    assert [event[:2] for event in log] == [("enter", 0), ("enter", 1), ("exit", 0), ("exit", 1)]


def test_leaving_a_scope_not_entered_here_is_an_error():
    shared = Recorder([])
    with pytest.raises(RuntimeError, match="not entered in this thread or task"):
        shared.__exit__(None, None, None)


@pytest.mark.django_db(transaction=True)
def test_a_shared_system_scope_restores_each_threads_own_tenant(tenant_factory):
    from django.db import connection

    from better_tenant import get_context, run_as, run_as_system
    from better_tenant.sql import CURRENT_FUNCTION

    acme = tenant_factory()
    system = run_as_system()  # one object, as a module-level constant would be
    a_in, both_in, a_out = threading.Event(), threading.Barrier(2, timeout=10), threading.Event()
    problems: list[str] = []

    def setting() -> str:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {CURRENT_FUNCTION}()::text")
            return cursor.fetchone()[0]

    def inside_a_tenant() -> None:
        with run_as(acme.id):
            with system:
                a_in.set()
                both_in.wait()
            # Back in acme's scope: the context and the connection must say acme again.
            assert get_context().tenant_id == acme.id, get_context()
            assert setting() == str(acme.id), setting()
        a_out.set()

    def at_top_level() -> None:
        # Entered second, left last: the entry on top of a shared stack would be this one.
        a_in.wait(10)
        with system:
            both_in.wait()
            a_out.wait(10)
        assert get_context().tenant_id is None and not get_context().is_system

    def run(work: Any) -> None:
        try:
            work()
        except Exception as exc:
            problems.append(f"{work.__name__}: {exc!r}")
            a_in.set()
            a_out.set()
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(w,)) for w in (inside_a_tenant, at_top_level)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert problems == []
