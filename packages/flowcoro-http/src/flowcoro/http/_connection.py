"""The request-running half of the HTTP protocol (`Connection`, the base of `HTTPProtocol`).

Requests start as soon as their header block is parsed, one at a time per connection; pipelined
ones wait in a bounded queue. A handler's first step runs right in the read callback, as the
connection's runner task (so ``asyncio.current_task()``, ``asyncio.timeout()`` and deadlines
work); only if it suspends does the runner, created once per connection, continue it. A request
that completes without waiting costs no task creation and no extra loop iteration.
"""

from __future__ import annotations

import asyncio
import contextvars
import types
from asyncio.tasks import _current_tasks  # type: ignore[attr-defined]
from collections import deque
from collections.abc import AsyncIterable, Awaitable, Callable, Coroutine
from typing import Any

import httptools

from flowcoro.core.errors import BrokenResourceError
from flowcoro.core.logger import get_logger
from flowcoro.http._date import date_line
from flowcoro.http._drive import (
    DONE,
    FAILED,
    Driven,
    Ready,
    Resumed,
    enter_task,
    leave_task,
    new_driver,
)
from flowcoro.http.errors import ClientDisconnect
from flowcoro.http.exceptions import problem
from flowcoro.http.request import Request
from flowcoro.http.response import (
    _CL,
    _PREFIX_200,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
    to_response,
)
from flowcoro.http.state import ServerState
from flowcoro.net import BaseProtocol

__all__ = ["Connection"]

log = get_logger("flowcoro.http")

# Response classes sent as they are (no conversion, not streamed): a set lookup, not isinstance.
_PLAIN = frozenset((Response, PlainTextResponse, JSONResponse, HTMLResponse))
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

# Deadline kinds
_NONE, _IDLE, _HEAD, _BODY, _LINGER = 0, 1, 2, 3, 4
_LINGER_TIME = 2.0
# Reasons reading is paused (bits)
_PIPELINE, _BUFFER, _DEAD = 1, 2, 4


class _Reject(Exception):
    """Raised inside a parser callback: answer ``status`` and close."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class _Done(Exception):
    """Marks a request whose handler finished: further body bytes are discarded."""


_DONE = _Done()


_COROUTINE = types.CoroutineType


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


class Connection(BaseProtocol):
    """The request-running half of `HTTPProtocol`: the pipeline queue, handlers, responses,
    flow control and keep-alive bookkeeping (the parsing half is `flowcoro.http.protocol`)."""

    __slots__ = (
        "_box",
        "_busy",
        "_chunk",
        "_cl",
        "_client",
        "_current",
        "_deadline",
        "_expect",
        "_framed",
        "_fresh",
        "_gone",
        "_head_bytes",
        "_headers",
        "_hosts",
        "_in_head",
        "_job",
        "_job_waiter",
        "_kind",
        "_last",
        "_linger",
        "_parser",
        "_paused",
        "_pumping",
        "_queue",
        "_req",
        "_runner",
        "_s",
        "_send",
        "_served",
        "_te",
        "_traceparent",
        "_url",
    )

    def __init__(self, state: ServerState) -> None:
        self._s = state
        self._parser = httptools.HttpRequestParser(self)
        self._req: Request | None = None
        self._current: Request | None = None
        self._queue: deque[Request | _Reject] | None = None
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0
        self._in_head = False
        self._fresh = False
        self._hosts = 0
        self._cl: int | None = None
        self._te = False
        self._expect = False
        self._framed = False
        self._traceparent: bytes | None = None
        self._served = 0
        self._runner: asyncio.Task[None] | None = None
        self._job: tuple[Request, Awaitable[Any], contextvars.Context] | None = None
        self._job_waiter: asyncio.Future[None] | None = None
        self._busy = False
        self._deadline = 0.0
        self._kind = _NONE
        self._paused = 0
        self._client: tuple[str, int] | None = None
        self._gone = False
        self._pumping = False
        self._last = False
        self._linger = False
        self._chunk = 0
        # The bound ``send`` of this connection's step driver (see flowcoro.http._drive).
        self._send: Callable[[Any], Any] | None = None
        self._box: list[Any] = [None]

    # -- connection lifecycle -----------------------------------------------------------

    def _pause(self, reason: int) -> None:
        if not self._paused and self.transport is not None:
            self.transport.pause_reading()
        self._paused |= reason

    def _unpause(self, reason: int) -> None:
        if self._paused & reason:
            self._paused &= ~reason
            if not self._paused and self.transport is not None and not self._gone:
                self.transport.resume_reading()

    def _stop_reading(self) -> None:
        self._last = True
        self._pause(_DEAD)

    def body_read_started(self, request: Request) -> None:
        if request.expect_continue:
            request.expect_continue = False
            transport = self.transport
            if transport is not None and not transport.is_closing():
                transport.write(_CONTINUE)

    def body_consumed(self, request: Request) -> None:
        if self._paused & _BUFFER and request._buffered <= self._s.limits.read_buffer_low:
            self._unpause(_BUFFER)

    def _set_idle(self) -> None:
        if self.shutting_down and self.transport is not None:
            self.transport.close()
            return
        self._kind = _IDLE
        self._deadline = self._s.now + self._s.keepalive_timeout

    # -- errors found while parsing -------------------------------------------------------

    def _write_error(self, status: int, detail: str) -> None:
        """Answer a request we could not parse, then close gracefully: stop sending, but read and
        drop what the client still sends for a moment, so that closing with unread data does not
        reset the connection before the client has read the answer (a lingering close)."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        response = problem(status, detail)
        transport.write(response.head(len(response.body), False, date_line()) + response.body)
        self._last = True
        if not transport.can_write_eof():  # pragma: no cover - TCP and Unix sockets can
            transport.close()
            return
        transport.write_eof()
        self._linger = True
        self._kind = _LINGER
        self._deadline = self._s.now + _LINGER_TIME
        self._paused = 0
        transport.resume_reading()

    # -- running requests -----------------------------------------------------------------

    def _pump(self, item: Request | _Reject | None = None) -> None:
        """Start queued requests, one at a time, while nothing is in flight."""
        if self._pumping:
            return
        self._pumping = True
        try:
            while self._current is None and not self._gone:
                if item is None:
                    queue = self._queue
                    if not queue:
                        break
                    item = queue.popleft()
                    if self._paused & _PIPELINE and len(queue) < self._s.limits.max_pipeline:
                        self._unpause(_PIPELINE)
                if isinstance(item, _Reject):
                    self._write_error(item.status, item.detail)
                    break
                self._start(item)
                item = None
        finally:
            self._pumping = False

    def _start(self, req: Request) -> None:
        """Run the handler's first step now; make a task only if it suspends."""
        self._current = req
        self._served += 1
        state = self._s
        if self._served >= state.max_keepalive_requests:
            req.keep_alive = False
        # The start time stays a local on the fast path (storing it on the request costs more
        # than reading the clock); the slow paths below hand it over.
        # (request_started rides on on_enter, below: no test for it here.)
        watched = state.watched
        if watched:
            clock = state.clock  # (a local: calling state.clock() is a slower method load)
            started = clock()
        else:
            started = 0.0
        if state.active >= state.max_concurrency:
            state.active += 1
            if state.on_start is not None:
                self._started(req)
            self._respond(req, self._overloaded(), started)
            return
        state.active += 1
        ctx = state.base.copy()  # type: ignore[union-attr] # the connection's, with presets
        kw = req._kw
        coro = req._endpoint(req, **kw) if kw else req._endpoint(req)
        enter = state.on_enter
        if enter is not None:
            # request_entered (a tracer): its wrapper, if any, runs around the final response.
            try:
                wrap = enter(req)
            except Exception:
                log.exception("http.observer_failed", observer=repr(enter))
                wrap = None
            if wrap is not None:
                coro = wrap(req, self._answer(req, coro))
                if coro.__class__ is not _COROUTINE:
                    coro = _awaited(coro)  # any awaitable: the driver steps coroutines
        loop = state.loop
        runner = self._runner
        if runner is None:
            runner = self._runner = loop.create_task(self._serve_suspended())
        try:
            # The first step runs here, in the read callback, but as the connection's runner
            # task: asyncio.timeout(), deadlines and current_task() work from the first line,
            # and if the handler suspends, that same task continues it.
            enter_task(loop, runner)
            entered = True
        except RuntimeError:
            # A task is running already (entering raises rather than nest): the runner itself
            # (starting the next queued request) goes on; any other (bytes fed by hand from a
            # task) leaves the request to the runner.
            if _current_tasks.get(loop) is not runner:
                self._hand_off(req, coro, ctx, started)
                return
            entered = False
        send = self._send
        box = self._box
        if send is None:
            driver = new_driver(box)
            driver.send(None)
            send = self._send = driver.send
        try:
            out = ctx.run(send, coro)
            if out is FAILED:
                error = box[0]
                box[0] = None
                out = ctx.run(send, self._recover(req, error))
        except asyncio.CancelledError as exc:
            # Raised by the handler itself at its first step (nothing cancels the read
            # callback): a failure like any other, answered 500. It went through the driver,
            # which is finished now; the next request gets a new one.
            self._send = None
            box[0] = self._server_error(req, exc)
            out = DONE
        except BaseException:
            self._send = None
            raise
        finally:
            if entered:
                leave_task(loop, runner)
        if out is DONE:
            result = box[0]
            box[0] = None
        elif out is FAILED:  # pragma: no cover - _recover answers every Exception itself
            result = self._server_error(req, box[0])
            box[0] = None
        else:
            # The handler waits: its driver goes with it to the runner; the next request on
            # this connection gets a new one.
            self._send = None
            self._box = [None]
            driver = send.__self__  # type: ignore[attr-defined] # the generator it is bound to
            self._hand_off(req, Resumed(driver, out, box), ctx, started)
            return
        if result.__class__ not in _PLAIN:
            if not isinstance(result, Response):
                try:
                    result = to_response(result)
                except TypeError as exc:
                    result = self._server_error(req, exc)
            if isinstance(result, StreamingResponse):
                self._hand_off(req, Ready(result), ctx, started)
                return
        # The common case of `_respond`, inline: a complete response on a kept connection.
        transport = self.transport
        if (
            req.keep_alive
            and req._complete
            and not self._last
            and not self.shutting_down
            and not transport.is_closing()  # type: ignore[union-attr]
        ):
            body = result.body
            pre = _PREFIX_200.get(result.media_type) if result.status == 200 else None
            if pre is not None and result.headers is None and len(body) < 4096:
                # Response.encode's common case, inline: a 200 with no extra headers.
                if req.method == "HEAD":
                    transport.write(pre + _CL[len(body)] + state.date + b"\r\n")  # type: ignore[union-attr]
                else:
                    transport.write(b"".join((pre, _CL[len(body)], state.date, b"\r\n", body)))  # type: ignore[union-attr]
            else:
                transport.write(result.encode(True, state.date, req.method == "HEAD"))  # type: ignore[union-attr]
            state.active -= 1
            if watched:
                # _observe, inline: one frame less on the instrumented hot path; an observer
                # that times the request itself saves the clock read here.
                # (Loaded first: calling it as state.on_timed(...) takes the interpreter's slow
                # path for a callable stored on the instance.)
                timed = state.on_timed
                try:
                    timed(req, req.route, req.method, result.status, started)
                except Exception:
                    log.exception("http.observer_failed", observer=repr(state.on_finish))
            if self._req is None and not self._queue and not self._in_head:
                self._current = None
                self.active = True
                self._kind = _IDLE
                self._deadline = state.now + state.keepalive_timeout
                return
            self._finished(req)
            return
        self._respond(req, result, started)

    async def _answer(self, req: Request, coro: Coroutine[Any, Any, Any]) -> Response:
        """The handler's result as the response the client gets (what `_start` and `_complete`
        make of it), for a ``request_entered`` wrapper to await."""
        try:
            result = await coro
        except Exception as exc:
            return await self._recover(req, exc)
        if isinstance(result, Response):
            return result
        try:
            return to_response(result)
        except TypeError as exc:
            return self._server_error(req, exc)

    def _hand_off(
        self, req: Request, pending: Awaitable[Any], ctx: contextvars.Context, started: float
    ) -> None:
        """Give the rest of this request (started at ``started`` on the server's clock) to the
        connection's runner task."""
        req._started = started
        self._job = (req, pending, ctx)
        waiter = self._job_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _serve_suspended(self) -> None:
        """The connection's runner: continues, one at a time, the requests whose handler
        suspended (or that stream their response), each in its own context."""
        loop = self._s.loop
        try:
            while not self._gone:
                job = self._job
                if job is None:
                    waiter = self._job_waiter = loop.create_future()
                    try:
                        await waiter
                    finally:
                        self._job_waiter = None
                    continue
                self._job = None
                req, pending, ctx = job
                self._busy = True
                try:
                    await Driven(self._complete(req, pending), ctx)
                finally:
                    self._busy = False
        finally:
            if self._runner is asyncio.current_task():
                self._runner = None

    def _respond(self, req: Request, response: Response, started: float) -> None:
        transport = self.transport
        state = self._s
        if not transport.is_closing():  # type: ignore[union-attr]
            if req.keep_alive and req._complete and not self._last and not self.shutting_down:
                keep = True
            else:
                keep = self._keep(req)
            transport.write(response.encode(keep, state.date, req.method == "HEAD"))  # type: ignore[union-attr]
            if not keep:
                self._last = True
                transport.close()  # type: ignore[union-attr]
        state.active -= 1
        if state.watched:
            self._observe(req, response.status, started)
        if req._complete and self._req is None and not self._queue and not self._in_head:
            # The common case of _finished: nothing else in flight, wait for the next request.
            self._current = None
            self.active = True
            if self.shutting_down or self._last:
                self._finished(req)
                return
            self._kind = _IDLE
            self._deadline = state.now + state.keepalive_timeout
            return
        self._finished(req)

    async def _complete(self, req: Request, pending: Awaitable[Any]) -> None:
        """The rest of a request whose handler suspended (or that streams its response)."""
        status = 500
        try:
            try:
                result = await pending
                if not isinstance(result, Response):
                    result = to_response(result)
            except Exception as exc:
                result = await self._recover(req, exc)
            except asyncio.CancelledError as exc:
                task = asyncio.current_task()
                if task is None or task.cancelling():
                    raise  # cancelled: the client went away (or the server is stopping)
                # The handler raised it without being cancelled: a failure, answered 500.
                result = self._server_error(req, exc)
            status = result.status
            if isinstance(result, StreamingResponse):
                await self._write_stream(req, result)
            else:
                transport = self.transport
                if transport is not None and not transport.is_closing():
                    keep = self._keep(req)
                    transport.write(result.encode(keep, self._s.date, req.method == "HEAD"))
                    if not keep:
                        self._last = True
                        transport.close()
        except asyncio.CancelledError:
            status = 499
            raise
        except Exception:  # pragma: no cover - defensive: to_response/_recover do not raise
            log.exception("http.write_failed", method=req.method, path=req.path)
        finally:
            self._done(req, status)

    def _done(self, req: Request, status: int) -> None:
        state = self._s
        state.active -= 1
        if state.watched:
            self._observe(req, status, req._started)
        self._finished(req)

    def _observe(self, req: Request, status: int, started: float) -> None:
        try:
            self._s.on_finish(req, req.route, status, self._s.clock() - started)
        except Exception:
            log.exception("http.observer_failed", observer=repr(self._s.on_finish))

    def _started(self, req: Request) -> None:
        """``request_started`` for a request refused before its handler starts (on_enter, which
        calls it otherwise, is not asked about such a request: it has no handler to wrap)."""
        try:
            self._s.on_start(req)  # type: ignore[misc]
        except Exception:
            log.exception("http.observer_failed", observer=repr(self._s.on_start))

    def _overloaded(self) -> Response:
        retry = str(self._s.limits.retry_after)
        return problem(
            503, "the server is at its concurrency limit", headers={"retry-after": retry}
        )

    async def _recover(self, req: Request, exc: Exception) -> Response:
        """An exception escaped the handler (and its middleware): its handler's response, or a
        500 that says nothing about it (the detail goes to the log with the request id)."""
        req.exception = exc
        on_error = self._s.handlers.lookup(exc)
        if on_error is not None:
            try:
                return to_response(await on_error(req, exc))
            except Exception as again:
                exc = again
        return self._server_error(req, exc)

    def _server_error(self, req: Request, exc: BaseException) -> Response:
        req.exception = exc
        log.error(
            "http.unhandled_error",
            method=req.method,
            path=req.path,
            request_id=req.id,
            exc_info=exc,
        )
        return problem(500, None, headers={"x-request-id": req.id})

    def _keep(self, req: Request) -> bool:
        if not req.keep_alive or self.shutting_down:
            return False
        if self._last and not self._queue:
            # Reading stopped (an upgrade, a bad request, a failed body): this is the last
            # answer unless requests parsed before that point still wait for theirs.
            return False
        # A client waiting for the "100 Continue" we never sent, or a failed body: the rest of
        # the body cannot be told from the next request.
        return req._complete or not (req.expect_continue or req._error is not None)

    async def _write_stream(self, req: Request, response: StreamingResponse) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        keep = self._keep(req)
        length = response.content_length
        chunked = length is None and req.http_version == "1.1"
        if length is None and not chunked:
            keep = False
        transport.write(response.head(length, keep, self._s.date, chunked))
        content = response.iterator
        try:
            if req.method != "HEAD":
                if isinstance(content, AsyncIterable):
                    async for chunk in content:
                        await self._send_chunk(transport, chunk, chunked)
                else:
                    for chunk in content:
                        await self._send_chunk(transport, chunk, chunked)
                if chunked:
                    transport.write(b"0\r\n\r\n")
        except (ConnectionError, BrokenResourceError):
            # The client went away mid-stream: nothing more to send, nobody to tell.
            self._last = True
            transport.abort()
            return
        except Exception:
            log.exception("http.stream_failed", method=req.method, path=req.path, request_id=req.id)
            self._last = True
            transport.abort()
            return
        finally:
            aclose = getattr(content, "aclose", None)
            if aclose is not None:
                await aclose()
        if not keep:
            self._last = True
            transport.close()

    async def _send_chunk(
        self, transport: asyncio.Transport, chunk: bytes | str, chunked: bool
    ) -> None:
        if isinstance(chunk, str):
            chunk = chunk.encode()
        if not chunk:
            return
        if transport.is_closing():
            raise ClientDisconnect("the client closed the connection during a streamed response")
        if chunked:
            transport.write(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        else:
            transport.write(chunk)
        if self._writing_paused:
            await self.drain()

    def _finished(self, req: Request) -> None:
        self._current = None
        self.active = True
        if not req._complete:
            # Nobody reads the rest of this body: drop it as it arrives.
            req._fail(_DONE)
            self._unpause(_BUFFER)
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self._queue:
            self._pump()
        elif self._last:
            transport.close()
        elif self._req is None and not self._in_head:
            self._set_idle()
