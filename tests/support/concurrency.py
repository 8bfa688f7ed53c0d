"""Run many requests at once: from threads through the test client, and through ASGIHandler."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable

from django.core.handlers.asgi import ASGIHandler
from django.db import connections

THREAD_TIMEOUT = 120


def run_threads(count: int, work: Callable[[int], None], problems: list[str]) -> None:
    """Run ``work(i)`` for i in range(count), each in its own thread, and wait for them all.

    An exception in a thread is added to ``problems`` (a crash must fail the test, not vanish);
    each thread closes its database connections when done.
    """

    def thread_main(i: int) -> None:
        try:
            work(i)
        except Exception as exc:
            problems.append(f"thread {i}: {exc!r}")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=thread_main, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=THREAD_TIMEOUT)
    alive = [thread.name for thread in threads if thread.is_alive()]
    assert not alive, f"threads still running after {THREAD_TIMEOUT}s: {alive}"


def run_async(count: int, one: Callable[[int], Awaitable[None]], in_flight: int) -> None:
    """Await ``one(index)`` for index in range(count), at most ``in_flight`` at a time."""

    async def main() -> None:
        gate = asyncio.Semaphore(in_flight)

        async def gated(index: int) -> None:
            async with gate:
                await one(index)

        await asyncio.gather(*(gated(index) for index in range(count)))

    asyncio.run(main())


async def asgi_get(handler: ASGIHandler, target: str, headers: dict[str, str]) -> tuple[int, dict]:
    """One GET of ``target`` (path and query) through Django's ASGI handler, as a server sends it.

    Returns the status and the JSON body (``{}`` when the body is empty).
    """
    path, _, query = target.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "headers": [(b"host", b"testserver")]
        + [(key.lower().encode(), value.encode()) for key, value in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    sent_body = False

    async def receive() -> dict:
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": b"", "more_body": False}
        # The client stays connected; the handler cancels this wait when it has answered.
        await asyncio.Event().wait()
        return {"type": "http.disconnect"}

    status = 0
    chunks: list[bytes] = []

    async def send(message: dict) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await handler(scope, receive, send)
    return status, json.loads(b"".join(chunks) or b"{}")
