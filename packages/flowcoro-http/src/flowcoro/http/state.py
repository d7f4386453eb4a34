"""`ServerState`: what every connection of one server shares, and the `RequestObserver` shape."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from flowcoro.http._date import date_line
from flowcoro.http.exceptions import ExceptionHandlers
from flowcoro.http.limits import HTTPLimits
from flowcoro.http.request import Request

if TYPE_CHECKING:
    from flowcoro.http.middleware import Endpoint
    from flowcoro.http.protocol import HTTPProtocol
    from flowcoro.http.routing import Router

__all__ = ["RequestObserver", "ServerState"]


class RequestObserver:
    """What ``flowcoro_http_observers`` returns: called synchronously around every request."""

    def request_started(self, request: Request) -> None:  # pragma: no cover - interface
        pass

    def request_finished(
        self, request: Request, route: str | None, status: int, duration: float
    ) -> None:  # pragma: no cover - interface
        pass


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
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment] # set on attach
        self.date = date_line()
        self._timer: asyncio.TimerHandle | None = None
        # The sweep also refreshes the cached Date line, so it runs at least twice a second.
        self._tick = min(
            0.5, limits.keepalive_timeout / 4, limits.header_timeout / 4, limits.body_timeout / 4
        )

    def attach(self, conn: HTTPProtocol) -> None:
        self.conns.add(conn)
        loop = asyncio.get_running_loop()
        if loop is not self.loop:  # the first connection (or the app served on another loop)
            self.loop = loop
            self._timer = None
        if self._timer is None:
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
