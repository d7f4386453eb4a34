"""Driving a handler's coroutine by hand: its first step runs in the read callback, the rest in
the connection's runner task (see `flowcoro.http._connection`)."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine, Generator
from typing import Any

__all__ = ["Driven", "NOTHING", "Ready", "Suspended", "current_task", "enter_task", "leave_task"]


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
