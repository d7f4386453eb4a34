"""`HTTPProtocol`: one `asyncio.Protocol` per connection, httptools callbacks, no task per request.

The parser's callbacks write straight into the connection's state; the request line and
headers become a `Request` when the header block completes, and the handler starts right there:
its coroutine is driven with ``send(None)`` inside a copy of the context, as the connection's
runner task, which continues it only if it actually suspends (see `flowcoro.http._connection`).
Pipelined requests wait in a bounded queue while one is in flight; responses go out in order.

The policy pieces (what to answer to which malformed input, limits, timeouts) live here; the
byte-level parsing is httptools'. `ServerState` holds what every connection of one server shares:
the router, the limits, the exception handlers, the observers, a coarse clock and the one timer
that enforces every connection's header, body and keep-alive deadlines.
"""

from __future__ import annotations

import asyncio
from collections import deque
from urllib.parse import unquote

import httptools

from flowcoro.http._connection import (
    _BODY,
    _BUFFER,
    _HEAD,
    _NONE,
    _PIPELINE,
    Connection,
    _Reject,
    log,
)
from flowcoro.http.errors import ClientDisconnect, HTTPException
from flowcoro.http.request import Request
from flowcoro.http.routing import METHODS
from flowcoro.http.routing import WEBSOCKET as _WS
from flowcoro.http.state import RequestObserver, ServerState

__all__ = ["HTTPProtocol", "ServerState", "RequestObserver"]

_new_request = object.__new__
# Header fields read while parsing (any other is only stored); traceparent (W3C trace context) is
# kept aside for tracers, so they need not scan every request's headers.
_SPECIAL = frozenset(
    (b"host", b"content-length", b"transfer-encoding", b"expect", b"upgrade", b"traceparent")
)
_METHODS: dict[bytes, str] = {}
_KNOWN = frozenset(m.encode() for m in METHODS)


def _wants_websocket(headers: list[tuple[bytes, bytes]]) -> bool:
    """The Upgrade header names websocket: another upgrade (``h2c``, sent by ``curl --http2``)
    on a WebSocket route (every path of an ASGI app) is an ordinary request."""
    return any(n == b"upgrade" and b"websocket" in v.lower() for n, v in headers)


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


class HTTPProtocol(Connection):
    """HTTP/1.1 (and 1.0) server side of one connection: the parsing half (httptools callbacks,
    limits and deadlines while a request arrives); `Connection` runs what was parsed."""

    __slots__ = ()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Read on every request: an attribute of the instance is read faster than the class
        # default it would otherwise fall back to (set first: nothing can have set it yet).
        self.shutting_down = False
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
        runner = self._runner
        if runner is not None and (not self._busy or self._s.limits.cancel_on_disconnect):
            # Idle: it has nothing left to do. Busy: cancel the handler (unless configured to
            # let it finish; the runner then ends after it).
            runner.cancel()
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
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            inner = exc.__context__
            if not isinstance(inner, _Reject):  # pragma: no cover - callbacks raise _Reject only
                log.error("http.parser_callback_failed", exc_info=inner)
                inner = _Reject(400, "malformed request")
            self._reject(inner)
            return
        except httptools.HttpParserUpgrade as exc:
            transport = self.transport
            if self._gone and transport is not None and transport.get_protocol() is not self:
                # WebSocket integration point: the connection was handed over in
                # on_headers_complete; bytes after the handshake belong to the new protocol.
                offset = exc.args[0] if exc.args and isinstance(exc.args[0], int) else len(data)
                if offset < len(data):
                    transport.get_protocol().data_received(data[offset:])  # type: ignore[attr-defined]
                return
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
            state = self._s
            if self._fresh:
                # The head started in this read: its deadline starts now (set here rather than
                # in on_url, so a head that completes in the read it starts in never sets it).
                self._head_bytes = self._head_size()
                self._kind = _HEAD
                self._deadline = state.now + state.header_timeout
            else:
                self._head_bytes += len(data)
            if self._head_bytes > state.max_header_size:
                self._reject(_Reject(431, "the request header block is too large"))
            elif len(self._headers) > state.max_header_count:
                self._reject(_Reject(431, "too many request header fields"))

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
        self._headers = []
        self._hosts = 0
        # _head_bytes and the framing fields (_cl, _te, _expect) are at rest here: they are
        # set only by heads that need them and put back by on_headers_complete.

    def on_header(self, name: bytes, value: bytes) -> None:
        # Count and size are checked per read (data_received) and when the block completes;
        # this runs once per header field, so it does as little as possible.
        n = name.lower()
        self._headers.append((n, value))
        if n == b"host":  # in every request: compared before the set lookup hashes the name
            self._hosts += 1
        elif n in _SPECIAL:
            self._special(n, value)

    def _special(self, n: bytes, value: bytes) -> None:
        if n != b"upgrade":
            self._framed = True
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
        elif n == b"traceparent":
            self._traceparent = value
        elif value.strip().lower() == b"100-continue":
            self._expect = True
        else:
            raise _Reject(417, "only 'Expect: 100-continue' is supported")

    def on_headers_complete(self) -> None:
        self._in_head = False
        state = self._s
        headers = self._headers
        if len(headers) > state.max_header_count:
            raise _Reject(431, "too many request header fields")
        spread = self._head_bytes  # nonzero only for a head that spanned reads
        if spread:
            self._head_bytes = 0
        if (spread or self._chunk > state.max_header_size) and (
            self._head_size() > state.max_header_size
        ):
            raise _Reject(431, "the request header block is too large")
        parser = self._parser
        # (Cheaper, counted in instructions per request, than scanning the read for versions.)
        version = parser.get_http_version()
        if version != "1.1" and version != "1.0":
            raise _Reject(505, "unsupported HTTP version")
        hosts = self._hosts
        if hosts != 1 and (hosts > 1 or version == "1.1"):
            raise _Reject(400, "an HTTP/1.1 request needs exactly one Host header")
        if self._framed:
            # Content-Length, Transfer-Encoding, Expect or traceparent: read them, then put
            # them to rest.
            self._framed = False
            cl, te, expect, parent = self._cl, self._te, self._expect, self._traceparent
            self._cl = self._traceparent = None
            self._te = self._expect = False
            if te and cl is not None:
                raise _Reject(  # pragma: no cover - llhttp refuses this first
                    400, "both Content-Length and Transfer-Encoding"
                )
        else:
            cl = parent = None
            te = expect = False
        raw_method = parser.get_method()
        if raw_method == b"GET":  # a comparison costs less than hashing a new bytes object
            method = "GET"
        else:
            known = _METHODS.get(raw_method)
            if known is None:
                known = raw_method.decode("ascii")
                if len(_METHODS) < 64:
                    _METHODS[raw_method] = known
            method = known
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
        # Request(method, path, query, headers, version, client, app, self), inline: the
        # class call with eight arguments costs more than the stores; fields that keep their
        # class default (no query, HTTP/1.1, keep-alive) are not stored at all.
        req = _new_request(Request)
        req.method = method
        req.path = path
        if query:
            req.query_string = query
        if version != "1.1":
            req.http_version = version
        req.client = self._client
        req.app = state.app
        req._raw_headers = headers
        req._conn = self
        req.keep_alive = parser.should_keep_alive() and not self._last
        if parent is not None:
            req.traceparent = parent
        limit = state.max_body_size
        if found is None:
            req._endpoint = state.fallback
        else:
            match, params = found
            route = match.routes.get(method)
            if (
                self._last
                and method == "GET"
                and _WS in match.routes
                and self._current is None
                and not self._queue
                and _wants_websocket(headers)
            ):
                # WebSocket integration point: an Upgrade request on a WebSocket route is
                # handed to flowcoro.http.ws (handshake, then transport.set_protocol); nothing
                # else of this request runs here.
                from flowcoro.http.ws._server import upgrade

                req.path_params = params
                upgrade(self, req, match.routes[_WS].handler)
                return
            if route is None:
                req._endpoint = state.fallback
                req._allow = match.allow
            else:
                req.route = route.path
                req._endpoint = route.endpoint
                if params is None:
                    req._kw = None  # stored: _start reads it, faster than the class default
                else:
                    req.path_params = params
                    req._kw = params if route.direct else None
                if route.max_body_size is not None:
                    limit = route.max_body_size
        if te or cl:
            if cl is not None and cl > limit:
                raise _Reject(413, f"the request body exceeds {limit} bytes")
            req._limit = limit
            if expect and version == "1.1":
                req.expect_continue = True
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
