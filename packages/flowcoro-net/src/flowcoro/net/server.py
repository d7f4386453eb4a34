"""`start_server` and `Server`: listening sockets, connection limits, statistics, graceful drain."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import socket
import ssl as _ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from flowcoro.net._sockets import tcp_sockets, unix_socket
from flowcoro.net.errors import InvalidLimit
from flowcoro.net.limits import DrainStats, Limits, ServerStatistics
from flowcoro.net.protocol import BaseProtocol

if TYPE_CHECKING:
    from types import TracebackType
    from typing import Self

    from flowcoro.net.streams import Connection

__all__ = ["ConnectionObserver", "Server", "start_server"]

_logger = logging.getLogger("flowcoro.net")

ProtocolFactory = Callable[[], BaseProtocol]
ConnectionHandler = Callable[["Connection"], Awaitable[None]]


class ConnectionObserver(Protocol):
    """Told about every connection a server accepts and loses (metrics, auditing). Observers come
    from ``start_server(observers=...)`` or the ``flowcoro_net_connection_observers`` hook at
    wiring time; with none, the server does not look for them per connection."""

    def connection_opened(self, protocol: BaseProtocol) -> None: ...

    def connection_closed(self, protocol: BaseProtocol) -> None: ...


class _Refused(asyncio.Protocol):
    """Stands in for the user's protocol when a connection is accepted beyond the limit."""

    __slots__ = ("_server",)

    def __init__(self, server: Server) -> None:
        self._server = server

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._server._refuse(transport)


class Server:
    """A listening server; made by `start_server`. ``async with server:`` shuts it down
    gracefully (``limits.drain_timeout``) on exit."""

    def __init__(
        self,
        factory: ProtocolFactory,
        listening: list[socket.socket],
        *,
        ssl: _ssl.SSLContext | None,
        limits: Limits,
        backlog: int,
        observers: Sequence[ConnectionObserver],
        unix_paths: Sequence[str],
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.limits = limits
        self._factory = factory
        self._listening = listening
        self._ssl = ssl
        self._backlog = backlog
        self._observers = tuple(observers)
        self._unix_paths = list(unix_paths)
        self._servers: list[asyncio.base_events.Server] = []
        self._connections: set[BaseProtocol] = set()
        self._high_water = limits.write_high_water
        self._low_water = limits.low_water
        self._max = limits.max_connections
        self._resume_at = max(0, min(self._max - 1, (self._max * 9) // 10))
        self._pause_on_limit = limits.overflow == "pause"
        self._paused = False
        self._resuming: asyncio.Task[None] | None = None
        self._closing = False
        self._empty: asyncio.Future[None] | None = None
        self._shutdown: asyncio.Future[DrainStats] | None = None
        self._finished: asyncio.Future[DrainStats] = self.loop.create_future()
        self._accepted = 0
        self._refused = 0
        self._refused_logged = 0
        self._refusal_logged_at = -1e9
        self._idle_closed = 0
        self._peak = 0

    # -- starting and accepting ----------------------------------------------------------------

    async def _start_serving(self) -> None:
        servers = []
        try:
            for sock in self._listening:
                # The loop gets a duplicate: closing it pauses accepting while our socket keeps
                # listening (new connections then wait in the kernel backlog).
                servers.append(
                    await self.loop.create_server(
                        self._make_protocol,
                        sock=sock.dup(),
                        ssl=self._ssl,
                        backlog=self._backlog,
                        ssl_handshake_timeout=self.limits.ssl_handshake_timeout
                        if self._ssl is not None
                        else None,
                    )
                )
        except BaseException:
            for srv in servers:
                srv.close()
            raise
        self._servers = servers

    def _make_protocol(self) -> asyncio.Protocol:
        if self._closing or len(self._connections) >= self._max:
            return _Refused(self)
        proto = self._factory()
        proto.server = self
        return proto

    def _refuse(self, transport: asyncio.BaseTransport) -> None:
        self._refused += 1
        now = self.loop.time()
        # One line per second at most: a flood of refusals must not become a flood of logs.
        if now - self._refusal_logged_at >= 1.0:
            why = "shutting down" if self._closing else f"max_connections={self._max} reached"
            quiet = self._refused - self._refused_logged - 1
            _logger.warning(
                "connection from %s refused: %s%s",
                transport.get_extra_info("peername"),
                why,
                f" ({quiet} more refused since the last report)" if quiet else "",
            )
            self._refusal_logged_at = now
            self._refused_logged = self._refused
        transport.abort()  # type: ignore[attr-defined]

    def _attach(self, proto: BaseProtocol) -> None:
        transport = proto.transport
        assert transport is not None
        conns = self._connections
        if self._closing or len(conns) >= self._max:
            # A TLS connection that finished its handshake after the limit was reached.
            self._refuse(transport)
            return
        conns.add(proto)
        proto._attached = True
        self._accepted += 1
        count = len(conns)
        if count > self._peak:
            self._peak = count
        transport.set_write_buffer_limits(self._high_water, self._low_water)
        timeout = self.limits.idle_timeout
        if timeout is not None:
            proto._idle_handle = self.loop.call_at(
                self.loop.time() + timeout / 2, proto._idle_check
            )
        if count >= self._max and self._pause_on_limit:
            self._pause()
        for observer in self._observers:
            observer.connection_opened(proto)

    def _detach(self, proto: BaseProtocol) -> None:
        conns = self._connections
        conns.discard(proto)
        for observer in self._observers:
            observer.connection_closed(proto)
        if not conns and self._empty is not None and not self._empty.done():
            self._empty.set_result(None)
        if self._paused and len(conns) <= self._resume_at and not self._closing:
            self._resume()

    def _idle_close(self, proto: BaseProtocol, timeout: float) -> None:
        self._idle_closed += 1
        _logger.info(
            "connection from %s closed: idle for more than %gs (idle_timeout)",
            proto.peername,
            timeout,
        )
        if proto.transport is not None:
            proto.transport.close()

    def _pause(self) -> None:
        self._paused = True
        _logger.warning(
            "max_connections=%d reached: accepting paused, new connections wait in the backlog",
            self._max,
        )
        for srv in self._servers:
            srv.close()
        self._servers = []

    def _resume(self) -> None:
        if self._resuming is not None:
            return

        async def resume() -> None:
            try:
                await self._start_serving()
            except OSError as exc:  # pragma: no cover - the socket is ours and listening
                _logger.error("could not resume accepting: %r", exc)
                return
            finally:
                self._resuming = None
            self._paused = False
            _logger.info("accepting resumed (%d connections)", len(self._connections))
            if self._closing:  # pragma: no cover - shutdown cancels this task
                self._close_listeners()

        self._resuming = self.loop.create_task(resume())

    # -- introspection -------------------------------------------------------------------------

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The listening sockets (owned by the server: do not close them)."""
        return tuple(self._listening)

    @property
    def addresses(self) -> list[Any]:
        """The listening addresses: ``(host, port)`` tuples (IPv6: 4-tuples) and Unix paths."""
        return [sock.getsockname() for sock in self._listening]

    @property
    def port(self) -> int:
        """The TCP port (handy with ``port=0``); raises when the server has no TCP socket."""
        for sock in self._listening:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                port: int = sock.getsockname()[1]
                return port
        raise InvalidLimit("port", "this server listens on no TCP socket")

    @property
    def connections(self) -> frozenset[BaseProtocol]:
        """The protocols of the connections open now (a snapshot)."""
        return frozenset(self._connections)

    @property
    def closing(self) -> bool:
        """True once `shutdown` began."""
        return self._closing

    def statistics(self) -> ServerStatistics:
        return ServerStatistics(
            active=len(self._connections),
            peak=self._peak,
            accepted=self._accepted,
            refused=self._refused,
            idle_closed=self._idle_closed,
            paused=self._paused,
        )

    # -- shutdown ------------------------------------------------------------------------------

    def _close_listeners(self) -> None:
        for srv in self._servers:
            srv.close()
        self._servers = []
        for sock in self._listening:
            sock.close()
        for path in self._unix_paths:
            with contextlib.suppress(OSError):
                os.unlink(path)
        self._unix_paths = []

    async def shutdown(self, drain_timeout: float | None = None) -> DrainStats:
        """Stop accepting, call every connection's ``begin_shutdown()``, wait up to
        ``drain_timeout`` (default ``limits.drain_timeout``) for them to finish, then cut the
        rest. Safe to call more than once and concurrently: every caller gets the same stats."""
        if self._shutdown is not None:
            return await asyncio.shield(self._shutdown)
        timeout = self.limits.drain_timeout if drain_timeout is None else drain_timeout
        if timeout < 0:
            raise InvalidLimit("drain_timeout", f"must be >= 0, got {timeout!r}")
        self._shutdown = self.loop.create_future()
        try:
            stats = await self._drain(timeout)
        except BaseException as exc:
            for fut in (self._shutdown, self._finished):
                fut.set_exception(exc)
                fut.exception()  # retrieved here: the caller gets it raised
            raise
        self._shutdown.set_result(stats)
        self._finished.set_result(stats)
        return stats

    async def _drain(self, timeout: float) -> DrainStats:
        loop = self.loop
        started = loop.time()
        self._closing = True
        if self._resuming is not None:
            self._resuming.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._resuming
        self._close_listeners()
        conns = self._connections
        total = len(conns)
        self._empty = loop.create_future()
        for proto in list(conns):
            try:
                proto.begin_shutdown()
            except Exception:
                _logger.exception("begin_shutdown of %r failed; it will be cut", proto)
        if conns:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await asyncio.shield(self._empty)
        cut = list(conns)
        for proto in cut:
            proto.cut()
        if cut:
            _logger.warning(
                "drain timeout %gs expired: %d of %d connections cut", timeout, len(cut), total
            )
            # Aborted transports report connection_lost on the next iterations; give them (and
            # cancelled handlers) a short, bounded time so nothing is left unclosed.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5.0):
                    await asyncio.shield(self._empty)
        return DrainStats(
            connections=total,
            drained=total - len(cut),
            cut=len(cut),
            duration=loop.time() - started,
        )

    async def wait_closed(self) -> DrainStats:
        """Wait until a shutdown (started elsewhere) has finished."""
        return await asyncio.shield(self._finished)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()


def _default_observers() -> list[ConnectionObserver]:
    """Observers contributed by plugins (``flowcoro_net_connection_observers``)."""
    try:
        from flowcoro.core.plugins import get_plugins
    except ImportError:  # pragma: no cover - core always has it once the platform landed
        return []
    caller = getattr(get_plugins().hook, "flowcoro_net_connection_observers", None)
    if caller is None:  # the net plugin was filtered out (FLOWCORO_PLUGINS)
        return []
    return [obs for group in caller() for obs in (group or ())]


async def start_server(
    protocol_factory: ProtocolFactory | ConnectionHandler,
    *,
    host: str | Sequence[str] | None = None,
    port: int | None = None,
    uds: str | None = None,
    ssl: _ssl.SSLContext | None = None,
    reuse_port: bool = False,
    backlog: int = 1024,
    limits: Limits | None = None,
    observers: Sequence[ConnectionObserver] | None = None,
    sock: socket.socket | Sequence[socket.socket] | None = None,
) -> Server:
    """Listen and serve; returns the running `Server`.

    ``protocol_factory`` is either a callable returning a `BaseProtocol` (the hot path) or an
    ``async def handler(conn: Connection)`` (the stream API: one task per connection).
    Listen on ``host``/``port`` (``host=None``: every interface, IPv4 and IPv6; ``port=0``: a
    free port, see ``server.port``), on the Unix socket ``uds``, or on already listening
    ``sock``\\ (s) — any combination. ``observers=None`` asks the plugins (hook
    ``flowcoro_net_connection_observers``); pass ``()`` for none.
    """
    limits = Limits() if limits is None else limits
    if backlog < 1:
        raise InvalidLimit("backlog", f"must be >= 1, got {backlog!r}")
    if port is not None and not 0 <= port <= 65535:
        raise InvalidLimit("port", f"must be between 0 and 65535, got {port!r}")
    if port is None and host is not None:
        raise InvalidLimit("port", "a host was given without a port")
    if ssl is not None and not isinstance(ssl, _ssl.SSLContext):
        raise InvalidLimit("ssl", f"must be an ssl.SSLContext, got {type(ssl).__name__}")
    if inspect.iscoroutinefunction(protocol_factory):
        from flowcoro.net.streams import handler_protocol_factory

        factory: ProtocolFactory = handler_protocol_factory(protocol_factory, limits)
    elif callable(protocol_factory):
        factory = protocol_factory  # type: ignore[assignment]
    else:
        raise InvalidLimit("protocol_factory", "must be a protocol factory or an async handler")
    listening: list[socket.socket] = []
    created_uds: str | None = None
    try:
        if sock is not None:
            listening.extend([sock] if isinstance(sock, socket.socket) else sock)
        if port is not None:
            hosts: Sequence[str | None] = (
                [host] if host is None or isinstance(host, str) else list(host)
            )
            for one in hosts:
                listening.extend(tcp_sockets(one, port, reuse_port=reuse_port, backlog=backlog))
                if port == 0:
                    port = listening[-1].getsockname()[1]
        if uds is not None:
            listening.append(unix_socket(uds, backlog=backlog))
            created_uds = uds
        if not listening:
            raise InvalidLimit("port", "nothing to listen on: give port, uds or sock")
        server = Server(
            factory,
            listening,
            ssl=ssl,
            limits=limits,
            backlog=backlog,
            observers=_default_observers() if observers is None else observers,
            unix_paths=[uds] if uds is not None else [],
        )
        await server._start_serving()
    except BaseException:
        for one_sock in listening:
            one_sock.close()
        if created_uds is not None:
            with contextlib.suppress(OSError):
                os.unlink(created_uds)
        raise
    return server
