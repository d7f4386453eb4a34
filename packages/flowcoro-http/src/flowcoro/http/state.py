"""`ServerState`: what every connection of one server shares, and the `RequestObserver` shape."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from time import perf_counter
from typing import TYPE_CHECKING, Any

from flowcoro.core.logger import get_logger
from flowcoro.http._date import date_line
from flowcoro.http.exceptions import ExceptionHandlers
from flowcoro.http.limits import HTTPLimits
from flowcoro.http.request import Request

if TYPE_CHECKING:
    from flowcoro.http.middleware import Endpoint
    from flowcoro.http.protocol import HTTPProtocol
    from flowcoro.http.routing import Router

__all__ = ["RequestObserver", "ServerState", "WebSocketObserver"]

_log = get_logger("flowcoro.http")
_access_log = get_logger("flowcoro.http.access")


class RequestObserver:
    """What ``flowcoro_http_observers`` returns: called synchronously around every request.

    ``request_finished`` is required. Two methods are optional (an observer that does not define
    them, or inherits these no-ops, costs nothing for them):

    - ``request_started(request)``: called when the handler starts. Leave it out when the
      request count in flight is all it would serve: `ServerState.active` has it.
    - ``bind_server(state)``: called once for each `ServerState` (one per served app) the
      observer is attached to, before its first request; it may keep the state to read live
      figures later (``state.active``: requests being handled now).
    - ``request_timed(request, route, method, status, started)``: what ``request_finished``
      is told, for an observer that reads the clock itself: ``started`` is
      ``time.perf_counter()`` when the request started. When it is the only observer (and the
      access log is off), the protocol's fast path (a complete response written at once) calls
      this instead, saving a clock read and a float in Python; every other path calls
      ``request_finished``.
    """

    def request_started(self, request: Request) -> None:  # pragma: no cover - interface
        pass

    def request_finished(
        self, request: Request, route: str | None, status: int, duration: float
    ) -> None:  # pragma: no cover - interface
        pass

    def bind_server(self, state: ServerState) -> None:  # pragma: no cover - interface
        pass

    def request_timed(
        self, request: Request, route: str | None, method: str, status: int, started: float
    ) -> None:  # pragma: no cover - interface
        pass


class WebSocketObserver:
    """What ``flowcoro_http_ws_observers`` returns: told about the app's WebSocket connections.

    ``route`` is the route template the connection was opened on (``"/chat/{room}"``, never the
    raw path). Calls are synchronous, from the event loop; an exception is logged and does not
    touch the connection. With no observer, WebSocket connections run the unobserved class
    and pay nothing.

    - ``websocket_opened(route)``: the opening handshake succeeded (101 sent);
    - ``websocket_message(route, received, text, size)``: one whole message (fragments are
      assembled first) received from the peer (``received=True``) or sent to it; ``text`` for a
      text message, ``size`` its payload in bytes (UTF-8 for text, before compression);
    - ``websocket_closed(route, code)``: the connection ended; ``code`` is the close code the
      peer sent (1006 when it ended without a closing handshake).
    """

    def websocket_opened(self, route: str | None) -> None:  # pragma: no cover - interface
        pass

    def websocket_message(
        self, route: str | None, received: bool, text: bool, size: int
    ) -> None:  # pragma: no cover - interface
        pass

    def websocket_closed(self, route: str | None, code: int) -> None:  # pragma: no cover
        pass


class _WebSocketFanout(WebSocketObserver):
    """Several WebSocket observers as one: each is called in turn, one failing does not skip
    the others."""

    def __init__(self, observers: tuple[WebSocketObserver, ...]) -> None:
        self.observers = observers

    def websocket_opened(self, route: str | None) -> None:
        for observer in self.observers:
            try:
                observer.websocket_opened(route)
            except Exception:
                _log.exception("http.ws_observer_failed", observer=repr(observer))

    def websocket_message(self, route: str | None, received: bool, text: bool, size: int) -> None:
        for observer in self.observers:
            try:
                observer.websocket_message(route, received, text, size)
            except Exception:
                _log.exception("http.ws_observer_failed", observer=repr(observer))

    def websocket_closed(self, route: str | None, code: int) -> None:
        for observer in self.observers:
            try:
                observer.websocket_closed(route, code)
            except Exception:
                _log.exception("http.ws_observer_failed", observer=repr(observer))


def _ws_observer(app: Any) -> WebSocketObserver | None:
    """The app's ``flowcoro_http_ws_observers``, gathered once (at wiring), as one observer."""
    hook = getattr(app, "_hook", None)
    observers = tuple(hook("flowcoro_http_ws_observers")) if hook is not None else ()
    if not observers:
        return None
    return observers[0] if len(observers) == 1 else _WebSocketFanout(observers)


Started = Callable[[Request], object]
Finished = Callable[[Request, "str | None", int, float], object]
Timed = Callable[[Request, "str | None", str, int, float], object]


def _defines(observer: object, name: str) -> bool:
    """The observer has its own ``name`` (not missing, not `RequestObserver`'s no-op)."""
    method = getattr(type(observer), name, None)
    if method is None:
        return callable(getattr(observer, name, None))  # set on the instance
    return method is not getattr(RequestObserver, name)


def _compose(
    observers: tuple[RequestObserver, ...], access_log: bool
) -> tuple[Started | None, Finished]:
    """One ``on_start(request)`` (None when no observer wants it) and one ``on_finish(request,
    route, status, duration)`` for the protocol to call: the observer's own bound methods when
    there is exactly one (the common case: no wrapper frame), else a function calling each in
    turn. The protocol logs what ``on_finish`` raises; with several observers one failing does
    not skip the others."""
    starts = tuple(o.request_started for o in observers if _defines(o, "request_started"))
    if len(observers) == 1 and not access_log:
        return (starts[0] if starts else None), observers[0].request_finished
    finishes = tuple((o, o.request_finished) for o in observers)

    def on_start(request: Request) -> None:
        for start in starts:
            start(request)

    def on_finish(request: Request, route: str | None, status: int, duration: float) -> None:
        for observer, finish in finishes:
            try:
                finish(request, route, status, duration)
            except Exception:
                _log.exception("http.observer_failed", observer=repr(observer))
        if access_log:
            _log_access(request, status, duration)

    return (on_start if starts else None), on_finish


def _timed(observers: tuple[RequestObserver, ...], access_log: bool, on_finish: Finished) -> Timed:
    """What the protocol's fast path calls: the single observer's own ``request_timed`` when
    it has one, else ``on_finish`` with the duration measured here."""
    if len(observers) == 1 and not access_log and _defines(observers[0], "request_timed"):
        return observers[0].request_timed

    def timed(
        request: Request, route: str | None, method: str, status: int, started: float
    ) -> None:
        on_finish(request, route, status, perf_counter() - started)

    return timed


def _log_access(req: Request, status: int, duration: float) -> None:
    client = f"{req.client[0]}:{req.client[1]}" if req.client else "-"
    _access_log.info(
        "http.request",
        client=client,
        method=req.method,
        path=req.path,
        version=req.http_version,
        status=status,
        duration_ms=round(duration * 1000, 3),
    )


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
        # Observers or an access log: only then is the clock read per request (one
        # perf_counter pair), and each side is at most one call, composed here rather than
        # per request.
        self.watched = bool(self.observers) or access_log
        self.on_start, self.on_finish = _compose(self.observers, access_log)
        self.on_timed = _timed(self.observers, access_log, self.on_finish)
        for observer in self.observers:
            if _defines(observer, "bind_server"):
                observer.bind_server(self)
        # WebSocket observers (None when there are none: then the WebSocket code pays nothing)
        # and, for them, the route template of each WebSocket endpoint.
        self.ws_observer = _ws_observer(app)
        self.ws_routes: dict[Any, str] = {}
        if self.ws_observer is not None:
            from flowcoro.http.routing import WEBSOCKET

            for route in router.routes():
                if WEBSOCKET in route.methods:
                    self.ws_routes[route.handler] = route.path
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
