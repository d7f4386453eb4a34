"""`HTTPProtocol`: one `asyncio.Protocol` per connection, httptools callbacks, no task per request.

The parser's callbacks write straight into the connection's state; the request line and
headers become a `Request` when the header block completes, and the handler starts right there:
its coroutine is driven with ``send(None)`` inside a copy of the context, and a task is created
only if it actually suspends (then the task resumes that same coroutine). Pipelined requests
wait in a bounded queue while one is in flight; responses go out in order.

The policy pieces (what to answer to which malformed input, limits, timeouts) live here; the
byte-level parsing is httptools'. `ServerState` holds what every connection of one server shares:
the router, the limits, the exception handlers, the observers, a coarse clock and the one timer
that enforces every connection's header, body and keep-alive deadlines.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from collections.abc import AsyncIterable, Awaitable, Callable, Coroutine, Generator, Sequence
from time import perf_counter
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import httptools

from flowcoro.core.errors import BrokenResourceError
from flowcoro.core.logger import get_logger
from flowcoro.http._date import date_line
from flowcoro.http.errors import ClientDisconnect, HTTPException
from flowcoro.http.exceptions import ExceptionHandlers, problem
from flowcoro.http.limits import HTTPLimits
from flowcoro.http.request import Request
from flowcoro.http.response import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
    to_response,
)
from flowcoro.http.routing import METHODS
from flowcoro.net import BaseProtocol

if TYPE_CHECKING:
    from flowcoro.http.middleware import Endpoint
    from flowcoro.http.routing import Router

__all__ = ["HTTPProtocol", "ServerState", "RequestObserver"]

log = get_logger("flowcoro.http")
access_log = get_logger("flowcoro.http.access")

_SPECIAL = frozenset((b"host", b"content-length", b"transfer-encoding", b"expect", b"upgrade"))
_METHODS: dict[bytes, str] = {}
_KNOWN = frozenset(m.encode() for m in METHODS)
# Response classes sent as they are (no conversion, not streamed): a set lookup, not isinstance.
_PLAIN = frozenset((Response, PlainTextResponse, JSONResponse, HTMLResponse))
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

# Deadline kinds
_NONE, _IDLE, _HEAD, _BODY, _LINGER = 0, 1, 2, 3, 4
_LINGER_TIME = 2.0
# Reasons reading is paused (bits)
_PIPELINE, _BUFFER, _DEAD = 1, 2, 4


class RequestObserver:
    """What ``flowcoro_http_observers`` returns: called synchronously around every request."""

    def request_started(self, request: Request) -> None:  # pragma: no cover - interface
        pass

    def request_finished(
        self, request: Request, route: str | None, status: int, duration: float
    ) -> None:  # pragma: no cover - interface
        pass


class _Reject(Exception):
    """Raised inside a parser callback: answer ``status`` and close."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class _Done(Exception):
    """Marks a request whose handler finished: further body bytes are discarded."""


_DONE = _Done()


class _Suspended:
    """Awaitable continuing a coroutine whose first step already ran (see `_resume`)."""

    __slots__ = ("coro", "first")

    def __init__(self, coro: Coroutine[Any, Any, Any], first: Any) -> None:
        self.coro = coro
        self.first = first

    def __await__(self) -> Generator[Any, None, Any]:
        return _resume(self.coro, self.first)


class _Ready:
    """Awaitable of a value already known."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __await__(self) -> Generator[Any, None, Any]:
        yield from ()
        return self.value


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


def _target(url: bytes, method: str) -> tuple[str, bytes]:
    """The request target as (decoded path, raw query); absolute-form targets are accepted."""
    if url[:1] == b"/":
        raw_path, _, query = url.partition(b"?")
    elif url == b"*" and method == "OPTIONS":
        raw_path, query = b"*", b""
    else:
        try:
            parsed = httptools.parse_url(url)
        except httptools.HttpParserInvalidURLError:
            raise _Reject(400, "malformed request target") from None
        raw_path, query = parsed.path or b"/", parsed.query or b""
        if parsed.schema is None or raw_path[:1] != b"/":
            raise _Reject(400, "malformed request target")
    path = raw_path.decode("latin-1")
    if b"%" in raw_path:
        path = unquote(path)
    return path, query


class ServerState:
    """Shared by every connection of one server (one per `App.protocol_factory()` call)."""

    def __init__(
        self,
        router: Router,
        *,
        app: Any = None,
        limits: HTTPLimits | None = None,
        handlers: ExceptionHandlers | None = None,
        fallback: Endpoint | None = None,
        observers: Sequence[RequestObserver] = (),
        access_log: bool = False,
        draining: Callable[[], bool] | None = None,
    ) -> None:
        self.router = router
        self.lookup = router.lookup
        self.app = app
        self.limits = limits = limits or HTTPLimits()
        self.handlers = handlers or ExceptionHandlers()
        self.fallback = fallback
        self.observers = tuple(observers)
        self.access_log = access_log
        self.active = 0
        self.header_timeout = limits.header_timeout
        self.max_header_count = limits.max_header_count
        self.max_header_size = limits.max_header_size
        self.max_body_size = limits.max_body_size
        self.max_keepalive_requests = limits.max_keepalive_requests
        self.max_concurrency = limits.max_concurrency
        self.keepalive_timeout = limits.keepalive_timeout
        # Observers or an access log: only then is the clock read per request.
        self.watched = bool(self.observers) or access_log
        self.targets: dict[bytes, tuple[str, bytes, Any]] = {}
        self.conns: set[HTTPProtocol] = set()
        self.now = 0.0
        self.date = date_line()
        self._timer: asyncio.TimerHandle | None = None
        # The sweep also refreshes the cached Date line, so it runs at least twice a second.
        self._tick = min(
            0.5, limits.keepalive_timeout / 4, limits.header_timeout / 4, limits.body_timeout / 4
        )

    def attach(self, conn: HTTPProtocol) -> None:
        self.conns.add(conn)
        if self._timer is None:
            loop = asyncio.get_running_loop()
            self.now = loop.time()
            self.date = date_line()
            self._timer = loop.call_at(self.now + self._tick, self._sweep)

    def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        now = self.now = loop.time()
        self.date = date_line()
        if not self.conns:
            self._timer = None
            return
        for conn in tuple(self.conns):
            deadline = conn._deadline
            if deadline and deadline <= now:
                conn._expired()
        self._timer = loop.call_at(now + self._tick, self._sweep)


class HTTPProtocol(BaseProtocol):
    """HTTP/1.1 (and 1.0) server side of one connection."""

    __slots__ = (
        "_cl",
        "_client",
        "_current",
        "_deadline",
        "_expect",
        "_fresh",
        "_gone",
        "_head_bytes",
        "_headers",
        "_hosts",
        "_in_head",
        "_kind",
        "_last",
        "_parser",
        "_paused",
        "_pumping",
        "_queue",
        "_req",
        "_s",
        "_served",
        "_task",
        "_te",
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
        self._served = 0
        self._task: asyncio.Task[Any] | None = None
        self._deadline = 0.0
        self._kind = _NONE
        self._paused = 0
        self._client: tuple[str, int] | None = None
        self._gone = False
        self._pumping = False
        self._last = False
        self._linger = False
        self._chunk = 0
        self._data = b""
        self._v11_known: bool | None = None

    # -- connection lifecycle -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if transport.is_closing():  # pragma: no cover - refused by the server (TLS at the limit)
            self._gone = True
            return
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self._client = (peer[0], peer[1])
        state = self._s
        state.attach(self)
        self._kind = _HEAD
        self._deadline = state.now + state.limits.header_timeout

    def connection_lost(self, exc: Exception | None) -> None:
        self._gone = True
        self._deadline = 0.0
        self._s.conns.discard(self)
        self._queue = None
        for req in (self._req, self._current):
            if req is not None and not req._complete:
                req._fail(ClientDisconnect("the client closed the connection"))
        task = self._task
        if task is not None and self._s.limits.cancel_on_disconnect:
            task.cancel()
        super().connection_lost(exc)

    @property
    def idle(self) -> bool:
        """No request in flight or arriving, and no recent activity (for the net idle timer)."""
        return not self.active and self._between_requests()

    def _between_requests(self) -> bool:
        return self._current is None and self._req is None and not self._queue and not self._in_head

    def begin_shutdown(self) -> None:
        """Idle keep-alive connections close now; busy ones after their current response."""
        self.shutting_down = True
        if self._between_requests() and self.transport is not None:
            self.transport.close()

    def _expired(self) -> None:
        kind = self._kind
        self._deadline = 0.0
        self._kind = _NONE
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if kind == _BODY:
            req = self._req
            if req is not None and req is self._current and not req._complete:
                req._fail(HTTPException(408, "the request body did not arrive in time"))
                self._stop_reading()
                return
        elif kind == _HEAD and self._req is None and self._in_head and self._current is None:
            self._write_error(408, "the request headers did not arrive in time")
            return
        transport.close()

    # -- parsing ----------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._linger:
            return
        self.active = True
        self._fresh = False
        self._chunk = len(data)
        self._data = data
        self._v11_known = None
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            inner = exc.__context__
            if not isinstance(inner, _Reject):  # pragma: no cover - callbacks raise _Reject only
                log.error("http.parser_callback_failed", exc_info=inner)
                inner = _Reject(400, "malformed request")
            self._reject(inner)
            return
        except httptools.HttpParserUpgrade:
            # What follows the head is another protocol's: answer the request, then close.
            self._stop_reading()
            if self._current is None and not self._queue and self.transport is not None:
                self.transport.close()
            return
        except httptools.HttpParserInvalidMethodError:
            # A well-formed request line with a method we do not know is 501; garbage is 400.
            for raw_line in data.split(b"\r\n"):
                line = raw_line.split(b" ")
                if (
                    len(line) == 3
                    and line[0].isalpha()
                    and line[0] not in _KNOWN
                    and line[2].startswith(b"HTTP/")
                ):
                    self._reject(_Reject(501, "unknown request method"))
                    return
            self._reject(_Reject(400, "malformed request line"))
            return
        except httptools.HttpParserError as exc:
            text = str(exc)
            if "version" in text.lower():
                self._reject(_Reject(505, "unsupported HTTP version"))
            else:
                self._reject(_Reject(400, "malformed request"))
            return
        if self._in_head:
            # The header block spans reads: bound it while it arrives, one read at a time.
            if self._fresh:
                self._head_bytes = self._head_size()
            else:
                self._head_bytes += len(data)
            state = self._s
            if self._head_bytes > state.max_header_size:
                self._reject(_Reject(431, "the request header block is too large"))
            elif len(self._headers) > state.max_header_count:
                self._reject(_Reject(431, "too many request header fields"))

    def _v11(self) -> bool:
        """Whether every request line starting in the current read is HTTP/1.1, found by
        scanning the read once: ``parser.get_http_version()`` formats a new string per call and
        costs more than the rest of the request line handling. True when every ``HTTP/`` in the
        read is ``HTTP/1.1``: any other version appears literally in the read, and then the
        parser is asked; a body that happens to contain such text only costs that call."""
        data = self._data
        count = data.count(b"HTTP/1.1")
        known = self._v11_known = count > 0 and data.count(b"HTTP/") == count
        return known

    def _head_size(self) -> int:
        return len(self._url) + sum(len(n) + len(v) + 4 for n, v in self._headers)

    def on_url(self, url: bytes) -> None:
        # The first callback of every message (no on_message_begin: one call less per request).
        if self._in_head:
            self._url += url
            return
        self._in_head = True
        self._fresh = True
        self._url = url
        self._head_bytes = 0
        self._headers = []
        self._hosts = 0
        self._cl = None
        self._te = False
        self._expect = False
        state = self._s
        self._kind = _HEAD
        self._deadline = state.now + state.header_timeout

    def on_header(self, name: bytes, value: bytes) -> None:
        # Count and size are checked per read (data_received) and when the block completes;
        # this runs once per header field, so it does as little as possible.
        n = name.lower()
        self._headers.append((n, value))
        if n in _SPECIAL:
            if n == b"host":
                self._hosts += 1
            else:
                self._special(n, value)

    def _special(self, n: bytes, value: bytes) -> None:
        if n == b"content-length":
            v = value.strip()
            if not v.isdigit() or (self._cl is not None and int(v) != self._cl):
                raise _Reject(  # pragma: no cover - llhttp refuses these first
                    400, "invalid or conflicting Content-Length"
                )
            self._cl = int(v)
        elif n == b"transfer-encoding":
            if self._te or value.strip().lower() != b"chunked":
                raise _Reject(501, "only the chunked transfer coding is supported")
            self._te = True
        elif n == b"upgrade":
            # Upgrades (WebSocket) are not served by this protocol: answer, then close.
            self._last = True
        elif value.strip().lower() == b"100-continue":
            self._expect = True
        else:
            raise _Reject(417, "only 'Expect: 100-continue' is supported")

    def on_headers_complete(self) -> None:
        self._in_head = False
        state = self._s
        if len(self._headers) > state.max_header_count:
            raise _Reject(431, "too many request header fields")
        if (self._chunk > state.max_header_size or self._head_bytes) and (
            self._head_size() > state.max_header_size
        ):
            raise _Reject(431, "the request header block is too large")
        parser = self._parser
        known = self._v11_known
        if known is None and self._fresh:
            known = self._v11()
        if known and self._fresh:
            version = "1.1"
        else:
            version = parser.get_http_version()
            if version != "1.1" and version != "1.0":
                raise _Reject(505, "unsupported HTTP version")
        hosts = self._hosts
        if hosts != 1 and (hosts > 1 or version == "1.1"):
            raise _Reject(400, "an HTTP/1.1 request needs exactly one Host header")
        cl = self._cl
        if self._te and cl is not None:
            raise _Reject(  # pragma: no cover - llhttp refuses this first
                400, "both Content-Length and Transfer-Encoding"
            )
        raw_method = parser.get_method()
        method = _METHODS.get(raw_method)
        if method is None:
            method = raw_method.decode("ascii")
            if len(_METHODS) < 64:
                _METHODS[raw_method] = method
        url = self._url
        hit = state.targets.get(url)
        if hit is not None:
            path, query, found = hit
        else:
            path, query = _target(url, method)
            found = state.lookup(path)
            if found is not None and found[1] is None and len(state.targets) < 4096:
                # A static route: remember the parsed target (bounded, per server).
                state.targets[url] = (path, query, found)
        req = Request(method, path, query, self._headers, version, self._client, state.app, self)
        req.keep_alive = parser.should_keep_alive() and not self._last
        limit = state.max_body_size
        if found is None:
            req._endpoint = state.fallback
        else:
            match, params = found
            route = match.routes.get(method)
            if route is None:
                req._endpoint = state.fallback
                req._allow = match.allow
            else:
                req.route = route.path
                req._endpoint = route.endpoint
                if params is not None:
                    req.path_params = params
                    if route.direct:
                        req._kw = params
                if route.max_body_size is not None:
                    limit = route.max_body_size
        if self._te or cl:
            if cl is not None and cl > limit:
                raise _Reject(413, f"the request body exceeds {limit} bytes")
            req._limit = limit
            req._complete = False
            req.expect_continue = self._expect and version == "1.1"
            self._kind = _BODY
            self._deadline = state.now + state.limits.body_timeout
            self._req = req
        else:
            req._complete = True
            self._kind = _NONE
            self._deadline = 0.0
        if self._current is None and not self._queue and not self._pumping:
            self._start(req)
        else:
            queue = self._queue
            if queue is None:
                queue = self._queue = deque()
            queue.append(req)
            if len(queue) >= state.limits.max_pipeline:
                self._pause(_PIPELINE)

    def on_body(self, body: bytes) -> None:
        req = self._req
        if req is None:  # pragma: no cover - httptools only calls this inside a message
            return
        if not req._feed(body):
            limit = req._limit
            raise _Reject(413, f"the request body exceeds {limit} bytes")
        if req._buffered > self._s.limits.read_buffer_high:
            self._pause(_BUFFER)

    def on_message_complete(self) -> None:
        req = self._req
        if req is not None:
            self._req = None
            req._finish()
            if self._kind == _BODY:
                self._kind = _NONE
                self._deadline = 0.0
            if self._current is None and not self._queue:
                self._set_idle()

    # -- flow control -------------------------------------------------------------------

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

    def _reject(self, exc: _Reject) -> None:
        """The parser cannot go on: answer ``exc.status`` once what is in flight is answered."""
        self._stop_reading()
        req = self._req
        if req is not None:
            # The head was fine, the body is not: its handler (running or queued) reads an
            # error instead of the body; nothing else on this connection will be parsed.
            self._req = None
            req.keep_alive = False
            if exc.status == 413:
                req._fail(HTTPException(413, exc.detail))
            else:
                req._fail(HTTPException(exc.status, exc.detail))
            if req is not self._current and not (self._queue and req in self._queue):
                self._close_after_writes()
            return
        if self._current is None and not self._queue:
            self._write_error(exc.status, exc.detail)
        else:
            queue = self._queue
            if queue is None:
                queue = self._queue = deque()
            queue.append(exc)

    def _close_after_writes(self) -> None:
        transport = self.transport
        if transport is not None and self._current is None and not self._queue:
            transport.close()

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
        if state.watched:
            req._started = perf_counter()
            for observer in state.observers:
                observer.request_started(req)
        if state.active >= state.max_concurrency:
            state.active += 1
            self._respond(req, self._overloaded())
            return
        state.active += 1
        ctx = contextvars.copy_context()
        kw = req._kw
        coro = req._endpoint(req, **kw) if kw else req._endpoint(req)
        try:
            waiting = ctx.run(coro.send, None)
        except StopIteration as stop:
            result = stop.value
        except Exception as exc:
            coro = self._recover(req, exc)
            try:
                waiting = ctx.run(coro.send, None)
            except StopIteration as stop:
                result = stop.value
            else:
                self._task = asyncio.get_running_loop().create_task(
                    self._complete(req, _Suspended(coro, waiting)), context=ctx
                )
                return
        else:
            self._task = asyncio.get_running_loop().create_task(
                self._complete(req, _Suspended(coro, waiting)), context=ctx
            )
            return
        if result.__class__ not in _PLAIN and not isinstance(result, Response):
            try:
                result = to_response(result)
            except TypeError as exc:
                result = self._server_error(req, exc)
        if result.__class__ not in _PLAIN and isinstance(result, StreamingResponse):
            self._task = asyncio.get_running_loop().create_task(
                self._complete(req, _Ready(result)), context=ctx
            )
            return
        self._respond(req, result)  # type: ignore[arg-type]

    def _respond(self, req: Request, response: Response) -> None:
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
            self._observe(req, response.status)
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
            self._task = None
            self._done(req, status)

    def _done(self, req: Request, status: int) -> None:
        state = self._s
        state.active -= 1
        if state.watched:
            self._observe(req, status)
        self._finished(req)

    def _observe(self, req: Request, status: int) -> None:
        state = self._s
        duration = perf_counter() - req._started if req._started else 0.0
        for observer in state.observers:
            try:
                observer.request_finished(req, req.route, status, duration)
            except Exception:
                log.exception("http.observer_failed", observer=repr(observer))
        if state.access_log:
            self._log_access(req, status, duration)

    def _overloaded(self) -> Response:
        retry = str(self._s.limits.retry_after)
        return problem(
            503, "the server is at its concurrency limit", headers={"retry-after": retry}
        )

    async def _recover(self, req: Request, exc: Exception) -> Response:
        """An exception escaped the handler (and its middleware): its handler's response, or a
        500 that says nothing about it (the detail goes to the log with the request id)."""
        on_error = self._s.handlers.lookup(exc)
        if on_error is not None:
            try:
                return to_response(await on_error(req, exc))
            except Exception as again:
                exc = again
        return self._server_error(req, exc)

    def _server_error(self, req: Request, exc: BaseException) -> Response:
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

    def _log_access(self, req: Request, status: int, duration: float) -> None:
        client = f"{self._client[0]}:{self._client[1]}" if self._client else "-"
        access_log.info(
            "http.request",
            client=client,
            method=req.method,
            path=req.path,
            version=req.http_version,
            status=status,
            duration_ms=round(duration * 1000, 3),
        )
