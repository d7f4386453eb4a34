"""One HTTP/1.1 client connection: a lean `asyncio.Protocol` around httptools' response parser.

The protocol is fed bytes by the loop and keeps the state of the one request in flight
(no pipelining). The request task waits on a single future that the protocol resolves when what
it waits for happened: the headers (streamed responses), the whole message (``client.get``), or
more body bytes. Errors are stored on the connection, named after the request, and raised by the
waiter, so the hot path creates one future per request and no tasks.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser

from flowcoro.core.deadline import remaining
from flowcoro.http.client.errors import (
    ClientError,
    HeadersTooLarge,
    ProtocolError,
    ReadError,
    ReadTimeout,
    ResponseTooLarge,
    WriteError,
    WriteTimeout,
)

__all__ = ["HTTPConnection", "WANT_HEADERS", "WANT_COMPLETE", "WANT_DATA"]

WANT_HEADERS: Final = 1
WANT_COMPLETE: Final = 2
WANT_DATA: Final = 3

_STREAM_HIGH_WATER: Final = 256 * 1024  # buffered body bytes of a streamed response
_NO_BODY_STATUS: Final = frozenset({204, 304})


class _Abort(Exception):
    """Raised inside a parser callback to stop parsing; the real error is on the connection."""


class HTTPConnection(asyncio.Protocol):
    __slots__ = (
        "_buffered",
        "_chunked",
        "_conn_close",
        "_conn_keep_alive",
        "_drain_waiter",
        "_got_bytes",
        "_has_length",
        "_header_bytes",
        "_header_size",
        "_informational",
        "_is_head",
        "_last_data",
        "_loop",
        "_max_body",
        "_max_header",
        "_new_parser",
        "_parser",
        "_paused_reading",
        "_read_cap",
        "_read_timeout",
        "_received",
        "_streaming",
        "_timer",
        "_until_eof",
        "_waiter",
        "_want",
        "_write_paused",
        "_wrote",
        "active",
        "chunks",
        "closed",
        "complete",
        "content_encoding",
        "error",
        "headers",
        "headers_done",
        "keep_alive",
        "method",
        "on_lost",
        "pool",
        "reason",
        "requests",
        "status",
        "transport",
        "url",
        "version",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, max_header_size: int) -> None:
        self._loop = loop
        self._max_header = max_header_size
        self._parser = HttpResponseParser(self)
        self._new_parser = False
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.requests = 0  # responses completed on this connection
        self.on_lost: Any = None  # callback(conn) once the connection is gone
        self.pool: Any = None  # the core Pool this connection belongs to
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._paused_reading = False
        self.active = False
        self.method = ""
        self.url = ""
        self.error: ClientError | None = None
        self.complete = False
        self.headers_done = False

    # ------------------------------------------------------------------ request side

    def usable(self) -> bool:
        """True when an idle connection can carry another request (server did not close it)."""
        transport = self.transport
        return not self.closed and transport is not None and not transport.is_closing()

    def begin(
        self, method: str, url: str, *, is_head: bool, streaming: bool, max_body: int | None
    ) -> None:
        """Reset the per-response state for a new request."""
        if self._new_parser:
            self._parser = HttpResponseParser(self)
            self._new_parser = False
        self.active = True
        self.method = method
        self.url = url
        self._is_head = is_head
        self._streaming = streaming
        self._max_body = max_body
        self.error = None
        self.status = 0
        self.reason = b""
        self.version = "1.1"
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self._buffered = 0
        self._received = 0
        self._header_bytes = 0
        self._header_size = 0
        self.headers_done = False
        self.complete = False
        self.keep_alive = False
        self._informational = False
        self._got_bytes = False
        self._has_length = False
        self._chunked = False
        self._conn_close = False
        self._conn_keep_alive = False
        self._until_eof = False
        self._want = 0
        self._wrote = False
        self.content_encoding: bytes | None = None

    def write(self, data: bytes) -> None:
        if self.headers_done:
            # The server answered before the body was sent (e.g. 413): stop sending; the cut
            # body leaves the connection unusable for another request.
            self.keep_alive = False
            return
        transport = self.transport
        if self.closed or transport is None or transport.is_closing():
            if self._wrote:
                raise WriteError(
                    "the connection closed while the request was being sent",
                    method=self.method,
                    url=self.url,
                ) from self.error
            error = ReadError(
                "the server closed the connection before the request was sent",
                method=self.method,
                url=self.url,
            )
            error.retryable = True
            raise error
        self._wrote = True
        transport.write(data)

    async def drain(self, timeout: float | None) -> None:
        """Wait until the transport's write buffer is below its high-water mark."""
        if self.error is not None:
            raise self.error
        if self.headers_done:
            return
        if self.closed:
            raise WriteError(
                "the connection closed while the request was being sent",
                method=self.method,
                url=self.url,
            )
        if not self._write_paused:
            return
        waiter = self._drain_waiter = self._loop.create_future()
        try:
            async with asyncio.timeout(timeout):
                await waiter
        except TimeoutError as exc:
            self.close()
            raise WriteTimeout(
                f"the server did not take the request body within {timeout:g}s",
                method=self.method,
                url=self.url,
            ) from exc
        finally:
            self._drain_waiter = None

    async def wait(self, want: int, read_timeout: float | None) -> None:
        """Wait for ``want`` (headers, the complete message, or more body bytes).

        ``read_timeout`` bounds the pause between two arrivals of bytes; the caller's deadline
        (``flowcoro.core.remaining()``) bounds the whole wait.
        """
        if self.error is not None:
            raise self.error
        if want == WANT_HEADERS and self.headers_done:
            return
        if self.complete or (want == WANT_DATA and self.chunks):
            return
        loop = self._loop
        waiter = self._waiter = loop.create_future()
        self._want = want
        left = remaining()
        now = loop.time()
        cap = None if left is None else now + left
        self._read_cap = cap
        self._read_timeout = read_timeout
        self._last_data = now
        when = None if read_timeout is None else now + read_timeout
        if cap is not None and (when is None or cap < when):
            when = cap
        if when is not None:
            self._timer = loop.call_at(when, self._on_timer)
        try:
            await waiter
        finally:
            self._waiter = None
            self._want = 0
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        if self.error is not None:
            raise self.error

    def take_body(self) -> bytes:
        chunks = self.chunks
        if not chunks:
            return b""
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.chunks = []
        self._buffered = 0
        if self._paused_reading and self.transport is not None and not self.closed:
            self._paused_reading = False
            self.transport.resume_reading()
        return data

    def reusable(self) -> bool:
        """The response was read in full and both sides keep the connection alive."""
        return self.complete and self.keep_alive and self.error is None and self.usable()

    def finish_request(self) -> None:
        self.active = False
        self.requests += 1

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    # ------------------------------------------------------------------ timers and wake-ups

    def _on_timer(self) -> None:
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        now = self._loop.time()
        cap = self._read_cap
        read_timeout = self._read_timeout
        if cap is not None and now >= cap:
            message = "the caller's deadline expired while waiting for the response"
        elif read_timeout is not None and now - self._last_data >= read_timeout:
            message = f"no response bytes within the read timeout of {read_timeout:g}s"
        else:
            when = self._last_data + read_timeout if read_timeout is not None else cap
            if cap is not None and when is not None and cap < when:
                when = cap
            assert when is not None
            self._timer = self._loop.call_at(when, self._on_timer)
            return
        self.error = ReadTimeout(message, method=self.method, url=self.url)
        self.close()
        waiter.set_result(None)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: ClientError) -> None:
        if self.error is None:
            self.error = error
        self.close()
        self._wake()

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        done = self.complete
        if not self.active or done:
            # Bytes nobody asked for (after the response, or on an idle connection): the
            # server is out of step with us, so this connection is never reused.
            self.keep_alive = False
            self.close()
            return
        self._got_bytes = True
        if self._waiter is not None:
            self._last_data = self._loop.time()
        if not self.headers_done:
            self._header_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except HttpParserUpgrade:
            self._fail(
                ProtocolError(
                    "the server switched protocols, which was not asked for",
                    method=self.method,
                    url=self.url,
                )
            )
            return
        except HttpParserError as exc:
            if self.complete and self.error is None:
                self.keep_alive = False  # stray bytes after a complete response
                self.close()
                return
            self._fail(
                ProtocolError(f"malformed response: {exc}", method=self.method, url=self.url)
            )
            return
        if not self.headers_done and self._header_bytes > self._max_header:
            self._fail(HeadersTooLarge(self._max_header, method=self.method, url=self.url))

    def eof_received(self) -> bool | None:
        return False  # close the transport: HTTP/1.1 has no half-closed use

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.active and not self.complete and self.error is None:
            if self.headers_done and self._until_eof:
                self.keep_alive = False
                self._finish()
            else:
                if self._got_bytes:
                    message = "the server closed the connection before the response was complete"
                else:
                    message = "the server closed the connection without sending a response"
                error = ReadError(message, method=self.method, url=self.url)
                error.retryable = not self._got_bytes
                if exc is not None:
                    error.__cause__ = exc
                self.error = error
        self._wake()
        drain = self._drain_waiter
        if drain is not None and not drain.done():
            drain.set_result(None)
        if self.on_lost is not None:
            self.on_lost(self)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        drain = self._drain_waiter
        if drain is not None and not drain.done():
            drain.set_result(None)

    # ------------------------------------------------------------------ httptools callbacks

    def on_message_begin(self) -> None:
        if self.complete:
            raise _Abort  # a second response nobody asked for

    def on_status(self, status: bytes) -> None:
        self.reason += status
        self._header_size += len(status) + 15

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))
        self._header_size += len(name) + len(value) + 4
        if self._header_size > self._max_header:
            self.error = HeadersTooLarge(self._max_header, method=self.method, url=self.url)
            raise _Abort
        size = len(name)
        if size == 10 or size == 14 or size == 16 or size == 17:
            lname = name.lower()
            if lname == b"content-length":
                self._has_length = True
            elif lname == b"transfer-encoding":
                self._chunked = b"chunked" in value.lower()
            elif lname == b"connection":
                token = value.lower()
                if b"close" in token:
                    self._conn_close = True
                elif b"keep-alive" in token:
                    self._conn_keep_alive = True
            elif lname == b"content-encoding":
                self.content_encoding = value.lower().strip()

    def on_headers_complete(self) -> None:
        parser = self._parser
        status = parser.get_status_code()
        if status < 200:
            # 1xx interim response (100 Continue, 103 Early Hints): skip it, the real one follows.
            self._informational = True
            self._header_size = 0
            self.headers = []
            self.reason = b""
            self._has_length = self._chunked = self._conn_close = self._conn_keep_alive = False
            self.content_encoding = None
            return
        self.status = status
        self.version = version = parser.get_http_version()
        self.headers_done = True
        no_body = self._is_head or status in _NO_BODY_STATUS
        self._until_eof = not no_body and not self._chunked and not self._has_length
        if version == "1.1":
            keep = not self._conn_close
        else:
            keep = self._conn_keep_alive and not self._conn_close
        self.keep_alive = keep and not self._until_eof
        if self._is_head:
            # httptools does not know the request was HEAD and would wait for a body: the
            # message ends here, and the next request gets a fresh parser.
            self._new_parser = True
            self._finish()
            return
        if self._want == WANT_HEADERS:
            self._wake()

    def on_body(self, body: bytes) -> None:
        if self.complete:
            raise _Abort
        self.chunks.append(body)
        size = len(body)
        self._buffered += size
        self._received += size
        if self._streaming:
            if self._buffered > _STREAM_HIGH_WATER and not self._paused_reading:
                self._paused_reading = True
                assert self.transport is not None
                self.transport.pause_reading()
            if self._want == WANT_DATA:
                self._wake()
        elif self._max_body is not None and self._received > self._max_body:
            self.error = ResponseTooLarge(self._max_body, method=self.method, url=self.url)
            self.close()
            self._wake()
            raise _Abort

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        if not self.complete:
            self._finish()

    def _finish(self) -> None:
        self.complete = True
        self._wake()
