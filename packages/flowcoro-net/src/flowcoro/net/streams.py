"""The stream API: `Connection` (read, read_exactly, read_until, write, drain, aclose) with read
and write timeouts, served by ``start_server(async_handler)`` or opened by `connect`.

Reading is bounded: past ``limits.read_buffer`` buffered bytes the transport stops reading, so a
fast peer is pushed back by TCP flow control instead of growing memory.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl as _ssl
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from flowcoro.core.deadline import effective_timeout
from flowcoro.net.errors import (
    ConnectError,
    ConnectTimeout,
    IncompleteReadError,
    InvalidLimit,
    LimitExceeded,
    NetError,
    ReadTimeout,
    WriteTimeout,
)
from flowcoro.net.limits import Limits
from flowcoro.net.protocol import BaseProtocol, _closed_error

if TYPE_CHECKING:
    from types import TracebackType
    from typing import Self

__all__ = ["Connection", "StreamProtocol", "connect", "handler_protocol_factory"]

_logger = logging.getLogger("flowcoro.net")
_DEFAULT_LIMITS = Limits()


class StreamProtocol(BaseProtocol):
    """Buffers incoming bytes for a `Connection` (bounded by ``limits.read_buffer``)."""

    def __init__(self, limits: Limits = _DEFAULT_LIMITS) -> None:
        self.limits = limits
        self._cap = limits.read_buffer
        self._buffer = bytearray()
        self._eof = False
        self._reading_paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._shutdown_waiter: asyncio.Future[None] | None = None
        self._close_waiters: list[asyncio.Future[None]] = []
        self.connection = Connection(self)

    def data_received(self, data: bytes) -> None:
        self.active = True
        buffer = self._buffer
        buffer += data
        if len(buffer) > self._cap and not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        # Keep our side open so the handler may still write (half-close); TLS cannot half-close.
        transport = self.transport
        return transport is not None and transport.get_extra_info("sslcontext") is None

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._wake()
        for waiter in self._close_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._close_waiters.clear()
        super().connection_lost(exc)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _consumed(self) -> None:
        if self._reading_paused and len(self._buffer) <= self._cap and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()

    async def _wait_data(self, timeout: float | None) -> None:
        """Wait for more bytes or EOF; the caller re-checks the buffer afterwards."""
        if self._waiter is not None:
            raise NetError("another task is already reading this connection")
        timeout = effective_timeout(timeout)
        waiter = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        try:
            if timeout is None:
                await waiter
            else:
                async with asyncio.timeout(timeout):
                    await waiter
        except TimeoutError:
            raise ReadTimeout(f"no data within {timeout:g}s (read timeout)") from None
        finally:
            if self._waiter is waiter:
                self._waiter = None

    def begin_shutdown(self) -> None:
        self.shutting_down = True
        waiter = self._shutdown_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class Connection:
    """A byte stream over one connection. Reads are for one task at a time.

    ``read_timeout`` / ``write_timeout`` (seconds, None: no bound) apply to each wait, and the
    caller's core deadline (`flowcoro.core.deadline`) shortens them.
    """

    __slots__ = ("_proto", "read_timeout", "write_timeout")

    def __init__(
        self,
        protocol: StreamProtocol,
        *,
        read_timeout: float | None = None,
        write_timeout: float | None = None,
    ) -> None:
        self._proto = protocol
        self.read_timeout = read_timeout
        self.write_timeout = write_timeout

    # -- reading -------------------------------------------------------------------------------

    async def read(self, n: int = 65536) -> bytes:
        """Up to ``n`` bytes as soon as any are available; ``b""`` at end of stream."""
        if n <= 0:
            raise InvalidLimit("n", f"must be > 0, got {n!r}")
        proto = self._proto
        while not proto._buffer:
            if proto._eof:
                self._raise_if_reset()
                return b""
            await proto._wait_data(self.read_timeout)
        buffer = proto._buffer
        data = bytes(buffer[:n])
        del buffer[:n]
        proto._consumed()
        return data

    async def read_exactly(self, n: int) -> bytes:
        """Exactly ``n`` bytes; `IncompleteReadError` (with ``partial``) if the stream ends."""
        if n < 0:
            raise InvalidLimit("n", f"must be >= 0, got {n!r}")
        proto = self._proto
        while len(proto._buffer) < n:
            if proto._eof:
                self._raise_if_reset()
                partial = bytes(proto._buffer)
                proto._buffer.clear()
                raise IncompleteReadError(partial, n)
            if proto._reading_paused:  # n is more than the cap: let the transport fill it
                proto._reading_paused = False
                if proto.transport is not None:
                    proto.transport.resume_reading()
            await proto._wait_data(self.read_timeout)
        buffer = proto._buffer
        data = bytes(buffer[:n])
        del buffer[:n]
        proto._consumed()
        return data

    async def read_until(self, separator: bytes = b"\n", *, max_size: int | None = None) -> bytes:
        """Bytes up to and including ``separator``. `LimitExceeded` when ``max_size``
        (default ``limits.read_buffer``) bytes arrive without it; `IncompleteReadError` at EOF."""
        if not separator:
            raise InvalidLimit("separator", "must not be empty")
        proto = self._proto
        limit = proto._cap if max_size is None else max_size
        start = 0
        while True:
            buffer = proto._buffer
            index = buffer.find(separator, start)
            if index >= 0:
                end = index + len(separator)
                if end > limit:
                    raise LimitExceeded("read_buffer", limit)
                data = bytes(buffer[:end])
                del buffer[:end]
                proto._consumed()
                return data
            if len(buffer) > limit:
                raise LimitExceeded("read_buffer", limit)
            if proto._eof:
                self._raise_if_reset()
                partial = bytes(buffer)
                buffer.clear()
                raise IncompleteReadError(partial, None)
            start = max(0, len(buffer) - len(separator) + 1)
            await proto._wait_data(self.read_timeout)

    def at_eof(self) -> bool:
        """True when the peer closed its side and everything was read."""
        return self._proto._eof and not self._proto._buffer

    def _raise_if_reset(self) -> None:
        exc = self._proto._lost_exc
        if exc is not None:
            raise _closed_error(exc)

    # -- writing -------------------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Queue ``data``; call `drain` to wait when the write buffer is above its high mark."""
        proto = self._proto
        transport = proto.transport
        if proto.closed or transport is None or transport.is_closing():
            raise _closed_error(proto._lost_exc)
        proto.active = True
        transport.write(data)

    async def drain(self) -> None:
        """Wait until the peer took enough data (write buffer below the low mark); bounded by
        ``write_timeout`` and the caller's deadline."""
        proto = self._proto
        if not proto._writing_paused and not proto.closed:
            return
        timeout = effective_timeout(self.write_timeout)
        try:
            if timeout is None:
                await proto.drain()
            else:
                async with asyncio.timeout(timeout):
                    await proto.drain()
        except TimeoutError:
            raise WriteTimeout(
                f"peer did not read {self.write_buffer_size} buffered bytes within {timeout:g}s"
            ) from None

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        """`write` then `drain`."""
        self.write(data)
        await self.drain()

    def write_eof(self) -> None:
        """Close our sending side (half-close); reading goes on."""
        transport = self._proto.transport
        if transport is not None and not transport.is_closing() and transport.can_write_eof():
            transport.write_eof()

    @property
    def write_buffer_size(self) -> int:
        transport = self._proto.transport
        return 0 if transport is None else transport.get_write_buffer_size()

    # -- closing and shutdown ------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._proto.closed

    async def aclose(self) -> None:
        """Flush what is buffered (bounded by ``write_timeout``, default 5 s) and close."""
        proto = self._proto
        transport = proto.transport
        if transport is None or proto.closed:
            return
        if not transport.is_closing():
            transport.close()
        waiter = asyncio.get_running_loop().create_future()
        done = proto._close_waiters
        done.append(waiter)
        timeout = 5.0 if self.write_timeout is None else self.write_timeout
        try:
            try:
                async with asyncio.timeout(timeout):
                    await asyncio.shield(waiter)
            except TimeoutError:
                transport.abort()  # connection_lost follows on the next iteration
                await waiter
        finally:
            if waiter in done:
                done.remove(waiter)

    def abort(self) -> None:
        """Close at once, dropping buffered data (the peer sees a reset)."""
        if self._proto.transport is not None:
            self._proto.transport.abort()

    @property
    def shutdown_requested(self) -> bool:
        """True once the server began a graceful shutdown."""
        return self._proto.shutting_down

    async def wait_shutdown(self) -> None:
        """Return when the server begins a graceful shutdown (cancellable): a long-lived handler
        (streaming, long poll) awaits this next to its work to finish early and cleanly."""
        proto = self._proto
        if proto.shutting_down:
            return
        if proto._shutdown_waiter is None:
            proto._shutdown_waiter = asyncio.get_running_loop().create_future()
        await asyncio.shield(proto._shutdown_waiter)

    # -- information ---------------------------------------------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        transport = self._proto.transport
        return default if transport is None else transport.get_extra_info(name, default)

    @property
    def peername(self) -> Any:
        return self.get_extra_info("peername")

    @property
    def sockname(self) -> Any:
        return self.get_extra_info("sockname")

    @property
    def protocol(self) -> StreamProtocol:
        return self._proto

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<Connection {state} peer={self.peername!r}>"


class _HandlerProtocol(StreamProtocol):
    """Runs ``handler(connection)`` as a task; the connection stays registered with the server
    (and so counts as in flight when draining) until both the transport and the task ended."""

    def __init__(self, handler: Callable[[Connection], Awaitable[None]], limits: Limits) -> None:
        super().__init__(limits)
        self._handler = handler
        self._task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if transport.is_closing():  # refused by the server
            return
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        conn = self.connection
        try:
            await self._handler(conn)
        except asyncio.CancelledError:
            pass  # cut by the drain timeout, or the connection vanished
        except IncompleteReadError as exc:
            if exc.partial:  # the peer left in the middle of a message
                _logger.warning("connection from %s closed: %s", self._peer(), exc)
            # else: the peer closed between messages, the normal end of a connection
        except (NetError, OSError) as exc:
            _logger.warning("connection from %s closed: %s", self._peer(), exc)
            if self.transport is not None:
                self.transport.abort()
        except Exception:
            _logger.exception("connection handler for %s failed", self._peer())
            if self.transport is not None:
                self.transport.abort()
        finally:
            transport = self.transport
            if transport is not None and not transport.is_closing():
                transport.close()
                if transport.get_write_buffer_size():
                    # close() waits for the peer to take the rest: bound that wait.
                    linger = self.connection.write_timeout or self.limits.drain_timeout
                    asyncio.get_running_loop().call_later(linger, transport.abort)
            if self.closed:
                BaseProtocol._release(self)

    def _peer(self) -> Any:
        return self.peername

    def _release(self) -> None:
        task = self._task
        if task is None or task.done():
            BaseProtocol._release(self)
        # else: the task's finally releases it once the handler returns

    @property
    def idle(self) -> bool:
        # A handler parked in a read with nothing buffered to write is idle; otherwise it is
        # working (it may be computing between reads).
        return self._waiter is not None and super().idle

    def cut(self) -> None:
        super().cut()
        if self._task is not None:
            self._task.cancel()


def handler_protocol_factory(
    handler: Callable[[Connection], Awaitable[None]], limits: Limits
) -> Callable[[], BaseProtocol]:
    """A protocol factory serving each connection with ``await handler(connection)``."""

    def factory() -> BaseProtocol:
        return _HandlerProtocol(handler, limits)

    return factory


async def connect(
    host: str | None = None,
    port: int | None = None,
    *,
    uds: str | None = None,
    timeout: float | None = 10.0,
    ssl: _ssl.SSLContext | bool | None = None,
    server_hostname: str | None = None,
    read_timeout: float | None = None,
    write_timeout: float | None = None,
    limits: Limits | None = None,
) -> Connection:
    """Open a connection to ``host``:``port`` (IPv4 or IPv6) or the Unix socket ``uds``.

    ``timeout`` bounds the connect and the TLS handshake and is shortened by the caller's core
    deadline. ``ssl=True`` uses the default verifying context. Failures raise `ConnectTimeout`
    or `ConnectError` (chained to the ``OSError``).
    """
    if uds is None and (host is None or port is None):
        raise InvalidLimit("port", "give either host and port, or uds")
    if uds is not None and port is not None:
        raise InvalidLimit("uds", "give either host and port, or uds, not both")
    limits = _DEFAULT_LIMITS if limits is None else limits
    context: _ssl.SSLContext | None
    if ssl is True:
        context = _ssl.create_default_context()
    elif ssl is False or ssl is None:
        context = None
    else:
        context = ssl
    if context is not None and server_hostname is None and uds is None:
        server_hostname = host
    wait = effective_timeout(timeout)
    loop = asyncio.get_running_loop()

    def factory() -> StreamProtocol:
        return StreamProtocol(limits)

    target = uds if uds is not None else f"{host}:{port}"
    try:
        async with asyncio.timeout(wait):
            if host is None or port is None:
                transport, proto = await loop.create_unix_connection(
                    factory, uds, ssl=context, server_hostname=server_hostname
                )
            else:
                transport, proto = await loop.create_connection(
                    factory, host, port, ssl=context, server_hostname=server_hostname
                )
    except TimeoutError:
        raise ConnectTimeout(f"connecting to {target} took more than {wait:g}s") from None
    except (OSError, _ssl.SSLError) as exc:
        raise ConnectError(f"cannot connect to {target}: {exc}") from exc
    transport.set_write_buffer_limits(limits.write_high_water, limits.low_water)
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn = proto.connection
    conn.read_timeout = read_timeout
    conn.write_timeout = write_timeout
    return conn
