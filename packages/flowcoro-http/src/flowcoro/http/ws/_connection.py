"""`WebSocket`: one WebSocket connection, the asyncio protocol and the user's API in one object.

Framing, masking, UTF-8 of close reasons, control frames and permessage-deflate are the
``websockets`` library's sans-I/O layer (``ServerProtocol`` / ``ClientProtocol``): bytes from the
socket go to ``receive_data``, frames come back from ``events_received`` and whatever the layer
wants written comes from ``data_to_send``. This module adds what the layer leaves to the I/O
side: assembling fragmented messages, UTF-8 validation of text messages (1007), the bounded
receive queue with read backpressure, write backpressure and the slow-client policy, the
heartbeat, and the closing handshake's timeouts.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from websockets.frames import Frame, Opcode
from websockets.protocol import OPEN, Protocol, Side

from flowcoro.http.errors import HTTPError
from flowcoro.http.ws._options import WSOptions
from flowcoro.net import BaseProtocol

if TYPE_CHECKING:
    from flowcoro.http.request import Request

__all__ = ["WebSocket", "WebSocketClosed", "WebSocketError", "prepared"]

# Module constants: an Enum member lookup per frame costs more than a global read.
_TEXT, _BINARY, _CONT = Opcode.TEXT, Opcode.BINARY, Opcode.CONT
_PONG, _CLOSE = Opcode.PONG, Opcode.CLOSE

Data = str | bytes


def prepared(data: Data) -> bytes:
    """``data`` as one unmasked, uncompressed frame, for `WebSocket.write_prepared`."""
    if isinstance(data, str):
        return Frame(Opcode.TEXT, data.encode()).serialize(mask=False)
    return Frame(Opcode.BINARY, bytes(data)).serialize(mask=False)


class WebSocketError(HTTPError):
    """Base of the WebSocket errors."""


class WebSocketClosed(WebSocketError, ConnectionError):
    """The connection is closed: ``code`` and ``reason`` as received (or 1006, abnormal)."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"WebSocket closed: {code} {reason}".rstrip())
        self.code = code
        self.reason = reason


class WebSocket(BaseProtocol):
    """A WebSocket connection: ``await ws.send(data)``, ``await ws.receive()``, ``async for``,
    ``await ws.close(code, reason)``. Server handlers get one; `connect_ws` returns one."""

    def __init__(self, proto: Protocol, options: WSOptions, request: Request | None = None) -> None:
        self._proto = proto
        self.options = options
        self.request = request
        """The HTTP request that opened it (server side)."""
        self.path_params: dict[str, Any] = dict(request.path_params or {}) if request else {}
        self.id = os.urandom(8).hex()
        """A random identifier (unique across processes in practice; the hub uses it)."""
        self._messages: deque[Data] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._frags: list[bytes] = []
        self._frag_text = False
        self._read_paused = False
        self._closed_fut: asyncio.Future[None] | None = None
        self._open_fut: asyncio.Future[None] | None = None
        self._ping_handle: asyncio.TimerHandle | None = None
        self._pong_handle: asyncio.TimerHandle | None = None
        self._close_handle: asyncio.TimerHandle | None = None
        self._ping_payload: bytes | None = None
        self.on_close: list[Callable[[WebSocket], None]] = []

    # -- properties -------------------------------------------------------------------------

    @property
    def subprotocol(self) -> str | None:
        return self._proto.subprotocol

    @property
    def open(self) -> bool:
        return self._proto.state is OPEN and not self.closed

    @property
    def close_code(self) -> int | None:
        """The code the peer closed with; 1006 when the connection ended without one; None
        while it is open."""
        rcvd = self._proto.close_rcvd
        if rcvd is not None:
            return rcvd.code
        return 1006 if self.closed else None

    @property
    def close_reason(self) -> str | None:
        rcvd = self._proto.close_rcvd
        if rcvd is not None:
            return rcvd.reason
        return "" if self.closed else None

    @property
    def extensions(self) -> list[str]:
        return [ext.name for ext in self._proto.extensions]

    @property
    def idle(self) -> bool:
        # An open WebSocket is never "idle" for the server's idle timer: the heartbeat decides.
        return self.closed

    # -- asyncio protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        loop = asyncio.get_running_loop()
        self._closed_fut = loop.create_future()
        limit = self.options.write_limit
        transport.set_write_buffer_limits(high=limit, low=limit // 4)  # type: ignore[attr-defined]

    def _started(self) -> None:
        """The opening handshake completed: start the heartbeat."""
        if self.options.ping_interval is not None:
            loop = asyncio.get_running_loop()
            self._ping_handle = loop.call_later(self.options.ping_interval, self._ping)

    def data_received(self, data: bytes) -> None:
        self.active = True
        proto = self._proto
        proto.receive_data(data)
        self._process()

    def eof_received(self) -> bool | None:
        self._proto.receive_eof()
        self._process()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        for handle in (self._ping_handle, self._pong_handle, self._close_handle):
            if handle is not None:
                handle.cancel()
        self._ping_handle = self._pong_handle = self._close_handle = None
        proto = self._proto
        if proto.state.name != "CLOSED":
            try:
                proto.receive_eof()
            except Exception:  # pragma: no cover - the reader is already at EOF
                pass
            proto.events_received()
        super().connection_lost(exc)
        self._wake()
        fut = self._closed_fut
        if fut is not None and not fut.done():
            fut.set_result(None)
        opening = self._open_fut
        if opening is not None and not opening.done():
            opening.set_exception(WebSocketClosed(1006, "connection lost during the handshake"))
        for callback in self.on_close:
            callback(self)
        self.on_close.clear()

    # -- sans-I/O plumbing ------------------------------------------------------------------

    def _process(self) -> None:
        proto = self._proto
        for event in proto.events_received():
            if isinstance(event, Frame):
                self._frame(event)
            else:
                self._event(event)
        # Most reads produce nothing to write (no pong, no close): skip the flush then.
        if proto.writes or proto.state is not OPEN:
            self._flush()

    def _event(self, event: Any) -> None:
        """A handshake event (the client's response); the client subclass handles it."""

    def _frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is _TEXT or opcode is _BINARY:
            if frame.fin:
                self._message(bytes(frame.data), opcode is _TEXT)
            else:
                self._frags = [bytes(frame.data)]
                self._frag_text = opcode is _TEXT
        elif opcode is _CONT:
            self._frags.append(bytes(frame.data))
            if frame.fin:
                data = b"".join(self._frags)
                self._frags = []
                self._message(data, self._frag_text)
        elif opcode is _PONG:
            if self._ping_payload is not None and bytes(frame.data) == self._ping_payload:
                self._ping_payload = None
                if self._pong_handle is not None:
                    self._pong_handle.cancel()
                    self._pong_handle = None
        elif opcode is _CLOSE:
            self._wake()
            self._expect_close()

    def _message(self, data: bytes, text: bool) -> None:
        if self._proto.state is not OPEN:
            return
        if text:
            try:
                message: Data = data.decode()
            except UnicodeDecodeError as exc:
                self._proto.fail(1007, f"invalid UTF-8 at position {exc.start}")
                self._expect_close()
                return
        else:
            message = data
        self._messages.append(message)
        self._wake()
        if len(self._messages) >= self.options.max_queue and not self._read_paused:
            # Read backpressure: the handler is behind; stop reading until it catches up.
            self._read_paused = True
            if self.transport is not None:
                self.transport.pause_reading()

    def _flush(self) -> None:
        transport = self.transport
        if transport is None:
            return
        proto = self._proto
        for chunk in proto.data_to_send():
            if chunk:
                transport.write(chunk)
            else:
                # SEND_EOF: the closing handshake is done on our side; close the TCP connection.
                transport.close()
        if proto.state is not OPEN and proto.close_expected():
            self._expect_close()

    def _expect_close(self) -> None:
        if self._close_handle is None and not self.closed:
            loop = asyncio.get_running_loop()
            self._close_handle = loop.call_later(self.options.close_timeout, self.cut)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # -- heartbeat --------------------------------------------------------------------------

    def _ping(self) -> None:
        self._ping_handle = None
        if self._proto.state is not OPEN or self.closed:
            return
        loop = asyncio.get_running_loop()
        if self._ping_payload is None:
            self._ping_payload = os.urandom(4)
            self._proto.send_ping(self._ping_payload)
            self._flush()
            if self.options.ping_timeout is not None:
                self._pong_handle = loop.call_later(self.options.ping_timeout, self._no_pong)
        assert self.options.ping_interval is not None
        self._ping_handle = loop.call_later(self.options.ping_interval, self._ping)

    def _no_pong(self) -> None:
        """Heartbeat policy: a peer that did not answer a ping in time is closed with 1011."""
        self._pong_handle = None
        if self._proto.state is OPEN:
            self._proto.fail(1011, "keepalive ping timeout")
            self._flush()
        # A dead peer does not answer the close frame either: do not wait for it.
        self.cut()

    # -- the user's API ---------------------------------------------------------------------

    async def receive(self) -> Data:
        """The next message (str for text, bytes for binary); raises `WebSocketClosed`."""
        while not self._messages:
            if self._proto.state is not OPEN or self.closed:
                raise self._closed_error()
            waiter = self._waiter
            if waiter is None:
                waiter = self._waiter = asyncio.get_running_loop().create_future()
            await waiter
        message = self._messages.popleft()
        if self._read_paused and len(self._messages) <= self.options.max_queue // 2:
            self._read_paused = False
            if self.transport is not None and not self.closed:
                self.transport.resume_reading()
        return message

    async def receive_text(self) -> str:
        message = await self.receive()
        if not isinstance(message, str):
            raise WebSocketError("expected a text message, received a binary one")
        return message

    async def receive_bytes(self) -> bytes:
        message = await self.receive()
        if not isinstance(message, bytes):
            raise WebSocketError("expected a binary message, received a text one")
        return message

    def __aiter__(self) -> WebSocket:
        return self

    async def __anext__(self) -> Data:
        # Not an async generator: one frame less per message on the echo path.
        try:
            return await self.receive()
        except WebSocketClosed:
            raise StopAsyncIteration from None

    def _closed_error(self) -> WebSocketClosed:
        proto = self._proto
        rcvd = proto.close_rcvd
        if rcvd is not None:
            return WebSocketClosed(rcvd.code, rcvd.reason)
        sent = proto.close_sent
        if sent is not None and not self.closed:
            return WebSocketClosed(sent.code, sent.reason)
        return WebSocketClosed(1006, "connection closed abnormally")

    def send_nowait(self, data: Data) -> None:
        """Write a message now, without waiting for the write buffer (callers bound it)."""
        if self._proto.state is not OPEN or self.closed:
            raise self._closed_error()
        if isinstance(data, str):
            self._proto.send_text(data.encode())
        elif isinstance(data, bytes | bytearray | memoryview):
            self._proto.send_binary(data)
        else:
            raise TypeError(f"data: expected str or bytes, got {type(data).__name__}")
        self._flush()

    def write_prepared(self, frame: bytes, data: Data) -> None:
        """Write a message serialized once for many connections by `prepared` (an unmasked,
        uncompressed frame: what a server sends without extensions); falls back to
        `send_nowait` where the frame does not apply (client side, compression)."""
        proto = self._proto
        if proto.extensions or proto.side is not Side.SERVER or proto.expect_continuation_frame:
            self.send_nowait(data)
            return
        if proto.state is not OPEN or self.closed:
            raise self._closed_error()
        self.transport.write(frame)  # type: ignore[union-attr]

    async def send(self, data: Data) -> None:
        """Send one message; waits while the peer is slow (see ``WSOptions.send_timeout``)."""
        self.send_nowait(data)
        if self._writing_paused:
            await self._wait_drained()

    async def send_fragments(self, parts: list[Data]) -> None:
        """Send one message in several frames (all str or all bytes)."""
        if not parts:
            raise ValueError("parts: at least one fragment is needed")
        text = isinstance(parts[0], str)
        if any(isinstance(p, str) != text for p in parts):
            raise TypeError("parts: fragments must be all str or all bytes")
        if self._proto.state is not OPEN or self.closed:
            raise self._closed_error()
        for i, part in enumerate(parts):
            raw = part.encode() if isinstance(part, str) else part
            fin = i == len(parts) - 1
            if i == 0:
                (self._proto.send_text if text else self._proto.send_binary)(raw, fin)
            else:
                self._proto.send_continuation(raw, fin)
        self._flush()
        if self._writing_paused:
            await self._wait_drained()

    async def _wait_drained(self) -> None:
        try:
            async with asyncio.timeout(self.options.send_timeout):
                await self.drain()
        except TimeoutError:
            # Slow-client policy: a peer that does not read for send_timeout is dropped.
            self.cut()
            raise WebSocketClosed(1006, "the peer did not read in time (send_timeout)") from None
        except ConnectionError:
            raise self._closed_error() from None

    async def ping(self, data: bytes = b"") -> None:
        if self._proto.state is not OPEN or self.closed:
            raise self._closed_error()
        self._proto.send_ping(data)
        self._flush()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake and wait (at most ``close_timeout``) for it to finish."""
        if self._proto.state is OPEN and not self.closed:
            self._proto.send_close(code, reason)
            self._flush()
            self._expect_close()
        await self.wait_closed()

    async def wait_closed(self) -> None:
        fut = self._closed_fut
        if fut is not None and not self.closed:
            await asyncio.shield(fut)

    def begin_shutdown(self) -> None:
        """The server is draining: close with 1001 (going away)."""
        self.shutting_down = True
        if self._proto.state is OPEN and not self.closed:
            self._proto.send_close(1001, "server shutting down")
            self._flush()
            self._expect_close()

    def cut(self) -> None:
        self._close_handle = None
        if self.transport is not None and not self.closed:
            self.transport.abort()

    def __repr__(self) -> str:
        return f"<WebSocket {self.id} {self._proto.state.name}>"
