"""HTTP helpers: middleware serving sync and async stacks, scopes around streaming bodies."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar, cast

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import FileResponse, HttpRequest, HttpResponseBase, StreamingHttpResponse

T = TypeVar("T")


class HybridMiddleware(ABC):
    """Base of a middleware that runs natively under WSGI and ASGI.

    Django tells the middleware which kind of ``get_response`` it wraps; in async mode the
    instance is marked as a coroutine function and a call returns ``__acall__(request)``.
    Subclasses implement ``handle(request)`` (sync) and ``__acall__(request)`` (async).
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        return self.handle(request)

    @abstractmethod
    def handle(self, request: HttpRequest) -> HttpResponseBase:
        """Answer ``request`` under WSGI (or any sync stack)."""

    @abstractmethod
    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        """Answer ``request`` under ASGI (or any async stack)."""


def stream_in_scope(response: HttpResponseBase, scope: Callable[[], Any]) -> HttpResponseBase:
    """Iterate a streaming body inside one entry of ``scope()`` for the whole body.

    ``scope()`` returns a context manager that is also an async one (a ``better_core.scope.Scope``):
    a sync body is read inside ``with scope()``, an async body inside ``async with scope()``.
    Suits a scope that must span the body, such as a transaction whose server-side cursors the
    body reads. Other responses are returned unchanged.
    """

    def sync_body(content: Iterator[Any]) -> Iterator[Any]:
        with scope():
            yield from content

    async def async_body(content: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async with scope():
            async for chunk in content:
                yield chunk

    return _wrap_body(response, sync_body, async_body)


def stream_each_chunk_in(
    response: HttpResponseBase, enter: Callable[[], T], leave: Callable[[T], None]
) -> HttpResponseBase:
    """Produce each chunk of a streaming body between ``enter()`` and ``leave(<its result>)``.

    Between chunks the server's own code runs, and a body that is never finished must not leave
    the scope behind in the thread; so the scope is set around each step only. ``enter`` and
    ``leave`` are cheap and synchronous (setting and resetting a context variable), also for an
    async body. Other responses are returned unchanged.
    """

    def sync_body(content: Iterator[Any]) -> Iterator[Any]:
        iterator = iter(content)
        while True:
            token = enter()
            try:
                chunk = next(iterator)
            except StopIteration:
                return
            finally:
                leave(token)
            yield chunk

    async def async_body(content: AsyncIterator[Any]) -> AsyncIterator[Any]:
        iterator = aiter(content)
        while True:
            token = enter()
            try:
                chunk = await anext(iterator)
            except StopAsyncIteration:
                return
            finally:
                leave(token)
            yield chunk

    return _wrap_body(response, sync_body, async_body)


def _wrap_body(
    response: HttpResponseBase,
    sync_body: Callable[[Iterator[Any]], Iterator[Any]],
    async_body: Callable[[AsyncIterator[Any]], AsyncIterator[Any]],
) -> HttpResponseBase:
    # Django's streaming responses (``response.streaming``) are StreamingHttpResponse.
    if not isinstance(response, StreamingHttpResponse) or isinstance(response, FileResponse):
        # A file's bytes need no scope, and servers may send a file without iterating it.
        return response
    # ``is_async`` tells which of the two kinds of iterator the body is.
    if response.is_async:
        response.streaming_content = async_body(
            cast(AsyncIterator[bytes], response.streaming_content)
        )
    else:
        response.streaming_content = sync_body(cast(Iterator[bytes], response.streaming_content))
    return response
