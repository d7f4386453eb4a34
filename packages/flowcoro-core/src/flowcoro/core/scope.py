"""Structured concurrency: scopes whose children end together, and the combinators built on them.

    async with scope() as s:
        s.spawn(fetch(a))
        s.spawn(fetch(b))
    # here every child has finished

- A scope waits for all its children. When one fails, the others and the body are cancelled and
  the **first** error is raised from ``async with`` as itself (not wrapped in an exception group),
  so ``except ConnectionError`` works. Every further error is attached to it as a note (its type,
  message and which task raised it) and logged through the ``flowcoro.scope`` logger: none is lost
  silently.
- ``scope(timeout=s)`` bounds the whole scope with a ``deadline`` (``DeadlineExceeded``).
- ``s.cancel()`` cancels the children and the body; the scope then exits quietly.
- Built on ``asyncio.TaskGroup``, so cancellation of the enclosing task behaves as in asyncio.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from types import TracebackType
from typing import Any, TypeVar

from flowcoro.core.deadline import deadline
from flowcoro.core.logger import get_logger

__all__ = ["Scope", "scope", "when_all", "when_any", "map_bounded"]

T = TypeVar("T")
R = TypeVar("R")

_log = get_logger("flowcoro.scope")


class Scope:
    """A group of child tasks; see the module docstring. Make one with ``scope()``."""

    __slots__ = ("_cancelled", "_deadline", "_group", "_host", "_tasks")

    def __init__(self, timeout: float | None = None) -> None:
        self._group = asyncio.TaskGroup()
        self._deadline = deadline(timeout) if timeout is not None else None
        self._host: asyncio.Task[Any] | None = None
        self._cancelled = False
        self._tasks: list[asyncio.Task[Any]] = []

    def spawn(self, coro: Coroutine[Any, Any, T], *, name: str | None = None) -> asyncio.Task[T]:
        """Start ``coro`` as a child task of the scope."""
        if self._host is None:
            coro.close()
            raise RuntimeError("scope.spawn() outside its 'async with' block")
        task = self._group.create_task(coro, name=name)
        self._tasks.append(task)
        return task

    def cancel(self) -> None:
        """Cancel every child and the body; the scope exits without raising CancelledError."""
        if self._host is None or self._cancelled:
            return
        self._cancelled = True
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        self._host.cancel()

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    async def __aenter__(self) -> Scope:
        self._host = asyncio.current_task()
        if self._deadline is not None:
            await self._deadline.__aenter__()
        try:
            await self._group.__aenter__()
        except BaseException:  # pragma: no cover - TaskGroup.__aenter__ only fails outside a task
            if self._deadline is not None:
                await self._deadline.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        error: BaseException | None = exc
        try:
            await self._group.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as group:
            error = _first_of(group)
        except BaseException as raised:  # CancelledError, KeyboardInterrupt, SystemExit
            error = raised
        finally:
            self._tasks.clear()
        if (
            self._cancelled
            and isinstance(error, asyncio.CancelledError)
            and self._host is not None
            and self._host.uncancel() == 0
        ):
            error = None  # our own cancel(): the scope ends quietly
        if self._deadline is not None:
            # Turns a cancellation by the scope's own timeout into DeadlineExceeded.
            await self._deadline.__aexit__(
                None if error is None else type(error),
                error,
                None if error is None else error.__traceback__,
            )
        if error is None:
            return True
        if error is exc:
            return False
        raise error from error.__cause__


def _first_of(group: BaseExceptionGroup[BaseException]) -> BaseException:
    errors = list(_flatten(group))
    first = errors[0]
    for other in errors[1:]:
        first.add_note(f"also raised in the same scope: {type(other).__name__}: {other}")
        _log.error("scope.error.suppressed", error=repr(other), first=repr(first), exc_info=other)
    return first


def _flatten(group: BaseExceptionGroup[BaseException]) -> Iterable[BaseException]:
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            yield from _flatten(error)
        else:
            yield error


def scope(*, timeout: float | None = None) -> Scope:
    """A new ``Scope`` (``async with scope() as s: s.spawn(...)``)."""
    return Scope(timeout)


async def when_all(*aws: Awaitable[T], timeout: float | None = None) -> list[T]:
    """Run every awaitable concurrently; their results in order. The first error cancels the
    rest and is raised; ``timeout`` bounds the whole (``DeadlineExceeded``)."""
    results: list[Any] = [None] * len(aws)

    async def one(index: int, aw: Awaitable[T]) -> None:
        results[index] = await aw

    async with scope(timeout=timeout) as s:
        for index, aw in enumerate(aws):
            s.spawn(one(index, aw))
    return results


async def when_any(*aws: Awaitable[T], timeout: float | None = None) -> T:
    """The result of the first awaitable to succeed; the others are cancelled (and awaited).

    If every one fails, the first error is raised (the others noted on it).
    """
    if not aws:
        raise ValueError("when_any() needs at least one awaitable")
    winner: list[T] = []
    errors: list[BaseException] = []

    async def one(aw: Awaitable[T], s: Scope) -> None:
        try:
            result = await aw
        except Exception as exc:
            errors.append(exc)
            return
        if not winner:
            winner.append(result)
            s.cancel()

    async with scope(timeout=timeout) as s:
        for aw in aws:
            s.spawn(one(aw, s))
    if winner:
        return winner[0]
    first = errors[0]
    for other in errors[1:]:
        first.add_note(f"when_any: another awaitable also failed: {type(other).__name__}: {other}")
    raise first


async def map_bounded(fn: Callable[[T], Awaitable[R]], items: Iterable[T], limit: int) -> list[R]:
    """``[await fn(x) for x in items]`` with at most ``limit`` calls running at once.

    Results come back in input order. ``items`` is consumed lazily (a generator of a million
    items is fine). The first error cancels the calls in flight and is raised.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"map_bounded: 'limit' must be an int >= 1, got {limit!r}")
    results: dict[int, R] = {}
    source = enumerate(items)

    async def worker() -> None:
        for index, item in source:
            results[index] = await fn(item)

    async with scope() as s:
        for _ in range(limit):
            s.spawn(worker())
    return [results[i] for i in range(len(results))]
