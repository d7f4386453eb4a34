"""Driving a handler's coroutine by hand: its first step runs in the read callback, the rest in
the connection's runner task (see `flowcoro.http._connection`)."""

from __future__ import annotations

import asyncio
import contextvars
import types
from collections.abc import Callable, Coroutine, Generator
from typing import Any

__all__ = [
    "DONE",
    "Driven",
    "FAILED",
    "NOTHING",
    "Ready",
    "Resumed",
    "Suspended",
    "current_task",
    "enter_task",
    "leave_task",
    "new_driver",
]


class Suspended:
    """Awaitable continuing a coroutine whose first step already ran (see `_resume`)."""

    __slots__ = ("coro", "first")

    def __init__(self, coro: Coroutine[Any, Any, Any], first: Any) -> None:
        self.coro = coro
        self.first = first

    def __await__(self) -> Generator[Any, None, Any]:
        return _resume(self.coro, self.first)


class Ready:
    """Awaitable of a value already known."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __await__(self) -> Generator[Any, None, Any]:
        yield from ()
        return self.value


class Driven:
    """Awaitable running a coroutine from its start with every step inside ``ctx``."""

    __slots__ = ("coro", "ctx")

    def __init__(self, coro: Coroutine[Any, Any, Any], ctx: contextvars.Context) -> None:
        self.coro = coro
        self.ctx = ctx

    def __await__(self) -> Generator[Any, None, Any]:
        coro, run = self.coro, self.ctx.run
        try:
            value = run(coro.send, None)
        except StopIteration as stop:
            return stop.value
        while True:
            try:
                yield value
            except BaseException as exc:
                try:
                    value = run(coro.throw, exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    value = run(coro.send, None)
                except StopIteration as stop:
                    return stop.value


NOTHING: Any = object()
current_task = asyncio.current_task
enter_task = asyncio.tasks._enter_task
leave_task = asyncio.tasks._leave_task


def _resume(coro: Coroutine[Any, Any, Any], first: Any) -> Generator[Any, None, Any]:
    """Continue, inside a task, a coroutine whose first step already ran and yielded ``first``
    (the future it waits on). Sends, throws and the result pass straight through."""
    value = first
    while True:
        try:
            yield value
        except BaseException as exc:
            try:
                value = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                value = coro.send(None)
            except StopIteration as stop:
                return stop.value


# -- the step driver ---------------------------------------------------------------------------
#
# A coroutine that returns without suspending reports its value by raising StopIteration out of
# ``send``: creating, raising and catching that exception is a good part of what running a
# short handler costs. A generator that ``yield from``s the handler's coroutine receives the
# value without any exception (the interpreter's SEND instruction takes it directly), so the
# connection keeps one such generator, the driver, and hands it each handler's coroutine:
# ``driver.send(coro)`` returns DONE (the value is in the driver's box), FAILED (the exception
# is in the box), or, when the handler suspends, what it yielded (the future it waits on), in
# which case the driver belongs to that request until it finishes (see `Resumed`).

DONE: Any = object()
FAILED: Any = object()


def _drive_steps(box: list[Any]) -> Generator[Any, Any, None]:
    mark = DONE
    while True:
        coro = yield mark
        try:
            box[0] = yield from coro
            mark = DONE
        except Exception as exc:
            box[0] = exc
            mark = FAILED


# ``yield from`` a coroutine needs an iterable-coroutine generator (types.coroutine sets the flag
# on the code object and returns the same function).
new_driver: Callable[[list[Any]], Generator[Any, Any, None]] = types.coroutine(_drive_steps)


class Resumed:
    """Awaitable continuing, inside a task, a driver whose handler suspended on ``first``: sends
    and throws pass through to the handler; its value or exception comes out of the box."""

    __slots__ = ("box", "driver", "first")

    def __init__(self, driver: Generator[Any, Any, None], first: Any, box: list[Any]) -> None:
        self.driver = driver
        self.first = first
        self.box = box

    def __await__(self) -> Generator[Any, None, Any]:
        driver, box = self.driver, self.box
        value = self.first
        while True:
            try:
                yield value
            except BaseException as exc:
                value = driver.throw(exc)
            else:
                value = driver.send(None)
            if value is DONE:
                result = box[0]
                box[0] = None
                return result
            if value is FAILED:
                error: BaseException = box[0]
                box[0] = None
                raise error
