"""Context scopes usable as context managers, async context managers and decorators."""

from __future__ import annotations

import functools
import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, TypeVar

from asgiref.sync import sync_to_async

F = TypeVar("F", bound=Callable[..., Any])

# The entries open in the current thread or task, innermost last, as (scope, entry) pairs. In a
# contextvar, not on the scope: one scope object entered from two threads or tasks at once must
# leave each entry in the thread or task that made it, on its own connection.
_ENTRIES: ContextVar[tuple[tuple[Scope, Scope], ...]] = ContextVar(
    "better_scope_entries", default=()
)


class Scope(ABC):
    """Base class for a scope entered with ``with``, ``async with`` or as a decorator.

    Subclasses implement ``enter()`` and ``exit(exc)``. One instance may be entered several times,
    even concurrently, because each entry works on a fresh copy made by ``_copy()``; the state of an
    entry lives on that copy. Async entry runs ``enter``/``exit`` in the thread Django uses for
    thread-sensitive database work, so that a database transaction opened by a scope is the one the
    async ORM calls see.
    """

    #: True when enter/exit touch the database and must run in Django's sync thread under async.
    uses_database = False

    @abstractmethod
    def enter(self) -> Any:
        """Enter the scope; the return value is what ``with ... as x`` binds."""

    @abstractmethod
    def exit(self, exc: BaseException | None) -> None:
        """Leave the scope; ``exc`` is the exception leaving the block, if any."""

    def _copy(self) -> Scope:
        clone = self.__class__.__new__(self.__class__)
        clone.__dict__.update(self._init_state())
        return clone

    def _init_state(self) -> dict[str, Any]:
        """The constructor state that a fresh entry starts from."""
        return dict(self.__dict__)

    # context manager -----------------------------------------------------------------------
    def __enter__(self) -> Any:
        entry = self._copy()
        result = entry.enter()
        _ENTRIES.set((*_ENTRIES.get(), (self, entry)))
        return result

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        stack = _ENTRIES.get()
        # This scope's innermost entry in this thread or task.
        mine = [i for i, (scope, _) in enumerate(stack) if scope is self]
        if not mine:
            raise RuntimeError("This scope is not entered in this thread or task.")
        index = mine[-1]
        _ENTRIES.set(stack[:index] + stack[index + 1 :])
        stack[index][1].exit(exc)

    async def __aenter__(self) -> Any:
        if self.uses_database:
            return await sync_to_async(self.__enter__, thread_sensitive=True)()
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if self.uses_database:
            await sync_to_async(self.__exit__, thread_sensitive=True)(exc_type, exc, tb)
        else:
            self.__exit__(exc_type, exc, tb)

    # decorator -----------------------------------------------------------------------------
    def __call__(self, func: F) -> F:
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                async with self._copy():
                    return await func(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self._copy():
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]
