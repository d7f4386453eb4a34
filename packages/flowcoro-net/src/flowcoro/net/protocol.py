"""`BaseProtocol`: the base of hot-path connection protocols served by `start_server`.

The base class never sits on the data path: it defines no ``data_received``, so a subclass's
``data_received`` is called by the loop directly. Its work happens once per connection
(``connection_made`` / ``connection_lost``), on write flow-control events, and in one lazily
re-armed idle timer per connection that reads the ``active`` flag the subclass sets.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from flowcoro.net.errors import ConnectionClosedError

if TYPE_CHECKING:
    from flowcoro.net.server import Server

__all__ = ["BaseProtocol"]

_logger = logging.getLogger("flowcoro.net")


class BaseProtocol(asyncio.Protocol):
    """Base class of connection protocols; subclass it and implement ``data_received``.

    Contract for subclasses:

    - call ``super().connection_made(transport)`` first and ``super().connection_lost(exc)``;
      when ``super().connection_made`` returns with ``self.transport.is_closing()`` true the
      server refused the connection (limit reached or shutting down): do nothing more;
    - set ``self.active = True`` when something happens on the connection (in
      ``data_received``, when writing): the idle timer reads and clears that flag, so marking
      activity costs one attribute store and no call;
    - override the ``idle`` property if "nothing in flight" means more than "no recent
      activity" (HTTP: between requests), and ``begin_shutdown`` to finish gracefully;
    - ``await self.drain()`` after large writes to respect the write high water mark.

    Attributes are class-level defaults, so a subclass need not call ``super().__init__()``.
    """

    transport: asyncio.Transport | None = None
    server: Server | None = None
    """The server that accepted this connection (None on the client side)."""
    active: bool = False
    """Set to True by the subclass on activity; cleared by the idle timer when it checks."""
    shutting_down: bool = False
    """True once the server began a graceful shutdown (see `begin_shutdown`)."""
    closed: bool = False
    """True once ``connection_lost`` ran."""
    _writing_paused: bool = False
    _drain_waiter: asyncio.Future[None] | None = None
    _idle_handle: asyncio.TimerHandle | None = None
    _idle_strikes: int = 0
    _lost_exc: BaseException | None = None
    _attached: bool = False

    # -- lifecycle -----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        server = self.server
        if server is not None:
            server._attach(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._lost_exc = exc
        handle = self._idle_handle
        if handle is not None:
            handle.cancel()
            self._idle_handle = None
        waiter = self._drain_waiter
        if waiter is not None:
            self._drain_waiter = None
            if not waiter.done():
                waiter.set_exception(_closed_error(exc))
        self._release()

    def _release(self) -> None:
        """Leave the server's registry; the stream protocol delays this until its handler ends."""
        server = self.server
        if server is not None and self._attached:
            self._attached = False
            server._detach(self)

    # -- write flow control --------------------------------------------------------------------

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        waiter = self._drain_waiter
        if waiter is not None:
            self._drain_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    @property
    def writing_paused(self) -> bool:
        """True while the transport's write buffer is above the high water mark."""
        return self._writing_paused

    async def drain(self) -> None:
        """Wait until the write buffer falls below the low water mark (returns at once when it
        is not above the high mark); raises `ConnectionClosedError` if the connection is lost."""
        if self.closed:
            raise _closed_error(self._lost_exc)
        if not self._writing_paused:
            return
        waiter = self._drain_waiter
        if waiter is None:
            waiter = asyncio.get_running_loop().create_future()
            self._drain_waiter = waiter
        # Shielded so that one cancelled writer does not fail the others sharing the waiter.
        await asyncio.shield(waiter)

    # -- graceful shutdown and idleness --------------------------------------------------------

    @property
    def idle(self) -> bool:
        """Whether nothing is in flight, so a draining server may close the connection at once
        and the idle timeout applies. Default: no activity since the last idle check and
        nothing waiting in the write buffer."""
        if self.active:
            return False
        transport = self.transport
        return transport is None or transport.get_write_buffer_size() == 0

    def begin_shutdown(self) -> None:
        """Called once when the server starts draining. Default: close at once when `idle`,
        otherwise let the protocol finish (it may check ``shutting_down``) until the server's
        drain timeout cuts it. Override to finish the current unit of work and then close."""
        self.shutting_down = True
        if self.idle and self.transport is not None:
            self.transport.close()

    def cut(self) -> None:
        """Abort the connection now (the drain timeout expired)."""
        if self.transport is not None:
            self.transport.abort()

    # -- idle timer (armed by the server) ------------------------------------------------------

    def _idle_check(self) -> None:
        self._idle_handle = None
        server = self.server
        if self.closed or server is None:
            return
        timeout = server.limits.idle_timeout
        assert timeout is not None  # the server only arms the timer with a timeout
        if self.idle:
            self._idle_strikes += 1
            if self._idle_strikes >= 2:
                server._idle_close(self, timeout)
                return
        else:
            self.active = False
            self._idle_strikes = 0
        # Two consecutive quiet half-periods close it: idle between 1 and 1.5 timeouts.
        loop = server.loop
        self._idle_handle = loop.call_at(loop.time() + timeout / 2, self._idle_check)

    # -- conveniences --------------------------------------------------------------------------

    @property
    def peername(self) -> Any:
        """The peer's address (None for a Unix socket peer without a name)."""
        return None if self.transport is None else self.transport.get_extra_info("peername")


def _closed_error(exc: BaseException | None) -> ConnectionClosedError:
    err = ConnectionClosedError("connection closed" if exc is None else f"connection lost: {exc!r}")
    err.__cause__ = exc
    return err
