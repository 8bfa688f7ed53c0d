"""better_core.http: hybrid middleware and scopes around streaming response bodies."""

import asyncio
import io
from contextvars import ContextVar

import pytest
from asgiref.sync import iscoroutinefunction
from django.http import FileResponse, HttpResponse, StreamingHttpResponse
from django.test import RequestFactory

from better_core.http import HybridMiddleware, stream_each_chunk_in, stream_in_scope
from better_core.scope import Scope

current: ContextVar[str | None] = ContextVar("current", default=None)


class Named(Scope):
    entries: list[str] = []

    def __init__(self, name: str) -> None:
        self.name = name

    def enter(self) -> None:
        Named.entries.append(self.name)
        self.token = current.set(self.name)

    def exit(self, exc: BaseException | None) -> None:
        current.reset(self.token)


def chunks(count: int):
    for index in range(count):
        yield f"{index}:{current.get()};"


async def achunks(count: int):
    for index in range(count):
        await asyncio.sleep(0)
        yield f"{index}:{current.get()};"


async def aread(response) -> bytes:
    return b"".join([chunk async for chunk in response.streaming_content])


def test_whole_body_runs_in_one_entry_of_the_scope():
    Named.entries.clear()
    response = stream_in_scope(StreamingHttpResponse(chunks(3)), lambda: Named("t"))
    assert b"".join(response.streaming_content) == b"0:t;1:t;2:t;"
    assert Named.entries == ["t"]
    assert current.get() is None

    Named.entries.clear()
    response = stream_in_scope(StreamingHttpResponse(achunks(2)), lambda: Named("a"))
    assert asyncio.run(aread(response)) == b"0:a;1:a;"
    assert Named.entries == ["a"]


def test_each_chunk_runs_between_enter_and_leave():
    calls: list[str] = []

    def enter():
        calls.append("enter")
        return current.set("c")

    def leave(token):
        calls.append("leave")
        current.reset(token)

    response = stream_each_chunk_in(StreamingHttpResponse(chunks(2)), enter, leave)
    iterator = iter(response.streaming_content)
    assert next(iterator) == b"0:c;"
    # Between chunks, the server's code runs without the scope.
    assert current.get() is None
    assert b"".join(iterator) == b"1:c;"
    # Two chunks and the step that finds the end.
    assert calls == ["enter", "leave"] * 3

    response = stream_each_chunk_in(StreamingHttpResponse(achunks(2)), enter, leave)
    assert asyncio.run(aread(response)) == b"0:c;1:c;"
    assert current.get() is None


def test_other_responses_are_returned_unchanged():
    plain = HttpResponse(b"x")
    assert stream_in_scope(plain, lambda: Named("t")) is plain
    calls: list[str] = []
    file = FileResponse(io.BytesIO(b"data"))
    assert stream_each_chunk_in(file, lambda: calls.append("enter"), calls.append) is file
    assert b"".join(file.streaming_content) == b"data"
    # A file is sent as it is (servers may use sendfile and never iterate it).
    assert calls == []


class Echo(HybridMiddleware):
    def handle(self, request):
        return HttpResponse(f"sync {self.get_response(request).content.decode()}")

    async def __acall__(self, request):
        response = await self.get_response(request)
        return HttpResponse(f"async {response.content.decode()}")


def test_hybrid_middleware_follows_the_mode_of_get_response():
    request = RequestFactory().get("/")

    def view(request):
        return HttpResponse(b"view")

    async def aview(request):
        return HttpResponse(b"view")

    sync_middleware = Echo(view)
    assert not sync_middleware.async_mode
    assert sync_middleware(request).content == b"sync view"

    async_middleware = Echo(aview)
    assert async_middleware.async_mode
    # Django awaits the middleware because asgiref sees it as a coroutine function.
    assert iscoroutinefunction(async_middleware)
    assert asyncio.run(async_middleware(request)).content == b"async view"


def test_hybrid_middleware_needs_both_ways():
    class SyncOnly(HybridMiddleware):
        def handle(self, request):
            return HttpResponse()

    with pytest.raises(TypeError, match="__acall__"):
        SyncOnly(lambda request: None)
