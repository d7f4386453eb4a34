"""The ASGI ``lifespan`` scope, driven from a flowcoro `App`'s startup and shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Literal

from flowcoro.core.logger import get_logger
from flowcoro.http.errors import HTTPError

__all__ = ["Lifespan", "LifespanError"]

log = get_logger("flowcoro.http.asgi")

Mode = Literal["auto", "on", "off"]


class LifespanError(HTTPError):
    """The ASGI application reported ``lifespan.startup.failed`` / ``shutdown.failed`` (or,
    with ``lifespan="on"``, does not support the lifespan scope)."""


class Lifespan:
    """Runs the application's lifespan coroutine in a task for the whole life of the server.

    ``mode``: "auto" (an application that raises before answering startup is taken not to
    support lifespan: logged, serving goes on), "on" (that is an error), "off" (never sent).
    ``state`` is the dict handed to the application in the scope; each request's scope gets
    a shallow copy of it (the ASGI lifespan-state extension).
    """

    __slots__ = ("_events", "_replies", "_task", "app", "mode", "state", "timeout")

    def __init__(
        self, app: Callable[..., Any], mode: Mode = "auto", *, timeout: float = 60.0
    ) -> None:
        if mode not in ("auto", "on", "off"):
            raise ValueError(f"lifespan: {mode!r} is not one of 'auto', 'on', 'off'")
        self.app = app
        self.mode = mode
        self.timeout = timeout
        self.state: dict[str, Any] = {}
        self._task: asyncio.Task[None] | None = None
        self._events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def _receive(self) -> dict[str, Any]:
        return await self._events.get()

    async def _send(self, message: dict[str, Any]) -> None:
        await self._replies.put(message)

    async def _main(self) -> None:
        scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "state": self.state,
        }
        await self.app(scope, self._receive, self._send)

    async def _exchange(self, event: str) -> dict[str, Any] | None:
        """Send ``lifespan.<event>``; the reply, or None when the application returned."""
        task = self._task
        assert task is not None
        self._events.put_nowait({"type": f"lifespan.{event}"})
        reply = asyncio.ensure_future(self._replies.get())
        try:
            done, _ = await asyncio.wait(
                (reply, task), timeout=self.timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            if not reply.done():
                reply.cancel()
        if reply in done:
            return reply.result()
        if task in done:
            return None
        raise LifespanError(f"the ASGI application did not answer lifespan.{event} in time")

    async def startup(self) -> None:
        if self.mode == "off":
            return
        self._task = asyncio.get_running_loop().create_task(self._main())
        reply = await self._exchange("startup")
        if reply is None:
            exc = self._task.exception()
            self._task = None
            if self.mode == "on":
                raise LifespanError(
                    "the ASGI application does not support the lifespan scope"
                ) from exc
            log.info("asgi.lifespan_unsupported", error=repr(exc) if exc else None)
            return
        if reply.get("type") == "lifespan.startup.failed":
            await self._finish()
            raise LifespanError(f"ASGI startup failed: {reply.get('message', '')}")
        if reply.get("type") != "lifespan.startup.complete":
            await self._finish()
            raise LifespanError(f"unexpected lifespan message {reply.get('type')!r}")

    async def shutdown(self) -> None:
        task = self._task
        if task is None:
            return
        try:
            reply = await self._exchange("shutdown")
        finally:
            await self._finish()
        if reply is not None and reply.get("type") == "lifespan.shutdown.failed":
            raise LifespanError(f"ASGI shutdown failed: {reply.get('message', '')}")

    async def _finish(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        if not task.done():
            try:
                await asyncio.wait_for(asyncio.shield(task), 1.0)
            except TimeoutError:
                task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        except Exception as exc:
            log.error("asgi.lifespan_error", error=repr(exc))
