"""`ServerState`: what every connection of one server shares, and the `RequestObserver` shape."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Sequence
from time import perf_counter
from typing import TYPE_CHECKING, Any

from flowcoro.core.logger import get_logger
from flowcoro.http._date import date_line
from flowcoro.http.exceptions import ExceptionHandlers
from flowcoro.http.limits import HTTPLimits
from flowcoro.http.request import Request
from flowcoro.http.response import Response

if TYPE_CHECKING:
    from flowcoro.http.middleware import Endpoint
    from flowcoro.http.protocol import HTTPProtocol
    from flowcoro.http.routing import Router

__all__ = ["RequestObserver", "ServerState", "WebSocketObserver"]

_log = get_logger("flowcoro.http")
_access_log = get_logger("flowcoro.http.access")


class RequestObserver:
    """What ``flowcoro_http_observers`` returns: called synchronously around every request.

    ``request_finished`` is required of an observer that times requests. The others are optional
    (an observer that does not define them, or inherits these no-ops, costs nothing for them):

    - ``request_started(request)``: called when the handler starts (just before its first
      step, in turn with the ``request_entered`` hooks, and for a request refused at the
      concurrency limit); what it raises is logged. Leave it out when the request count in
      flight is all it would serve: `ServerState.active` has it.
    - ``bind_server(state)``: called once for each `ServerState` (one per served app) the
      observer is attached to, before its first request; it may keep the state to read live
      figures later (``state.active``: requests being handled now).
    - ``request_timed(request, route, method, status, started)``: what ``request_finished``
      is told, for an observer that reads the clock itself: ``started`` is
      ``time.perf_counter()`` when the request started. When it is the only observer (and the
      access log is off), the protocol's fast path (a complete response written at once) calls
      this instead, saving a clock read and a float in Python; every other path calls
      ``request_finished``.
    - ``clock()``: the monotonic clock, in seconds, the server then reads to time requests
      instead of ``time.perf_counter`` (for ``started``, and for the duration on the other
      paths): an observer whose ``request_timed`` reads a cheaper clock of its own provides it,
      so both ends agree. Used only when it is the single timing observer.
    - ``request_entered(request)``: called after routing, just before the handler starts. It
      returns None, or a wrapper ``wrap(request, respond)`` for this request alone:
      ``respond`` is an awaitable of the request's final `Response` (exception handlers already
      applied, so its status is the one sent), and ``wrap`` returns the awaitable the server
      runs instead (it must await ``respond`` and return its response). The wrapper runs in
      the request's own context (a copy that ends with the request: what it sets is seen by
      the handler and what it spawns, and by no other request); the hook itself runs outside
      it, so it must not set context variables (`ServerState.preset` sets one for every
      request for free). This is how a tracer runs a span around the requests it samples while
      the others pay one call. An observer that defines only this one is not timed (no clock
      is read for it).
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

    def request_entered(self, request: Request) -> Wrap | None:  # pragma: no cover - interface
        return None

    def clock(self) -> float:  # pragma: no cover - interface
        return perf_counter()


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
Wrap = Callable[[Request, Awaitable[Response]], Awaitable[Response]]
Entered = Callable[[Request], "Wrap | None"]
Finished = Callable[[Request, "str | None", int, float], object]
Timed = Callable[[Request, "str | None", str, int, float], object]


def _defines(observer: object, name: str) -> bool:
    """The observer has its own ``name``: set (on the class or the instance, a slot included)
    and not `RequestObserver`'s no-op."""
    method = getattr(observer, name, None)
    if not callable(method):
        return False
    return getattr(method, "__func__", None) is not getattr(RequestObserver, name)


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


def _entered(observers: tuple[RequestObserver, ...], on_start: Started | None) -> Entered | None:
    """One ``on_enter(request)`` for the protocol (None when no observer defines
    ``request_entered`` and none ``request_started``): the observer's own bound method when only
    one does, else a function calling ``on_start`` first, then asking each hook in turn and
    nesting the wrappers they return (the first observer's outermost). What a hook raises is
    logged; the request goes on without that hook's wrapper."""
    hooks = tuple((o, o.request_entered) for o in observers if _defines(o, "request_entered"))
    if not hooks and on_start is None:
        return None
    if len(hooks) == 1 and on_start is None:
        return hooks[0][1]

    def on_enter(request: Request) -> Wrap | None:
        if on_start is not None:
            try:
                on_start(request)
            except Exception:
                _log.exception("http.observer_failed", observer=repr(on_start))
        wraps: list[Wrap] = []
        for observer, hook in hooks:
            try:
                wrap = hook(request)
            except Exception:
                _log.exception("http.observer_failed", observer=repr(observer))
                continue
            if wrap is not None:
                wraps.append(wrap)
        if not wraps:
            return None
        if len(wraps) == 1:
            return wraps[0]

        def nested(request: Request, respond: Awaitable[Response]) -> Awaitable[Response]:
            for wrap in reversed(wraps):
                respond = wrap(request, respond)
            return respond

        return nested

    return on_enter


def _timed(
    observers: tuple[RequestObserver, ...], access_log: bool, on_finish: Finished
) -> tuple[Timed, Callable[[], float]]:
    """What the protocol's fast path calls, and the clock requests are timed with: the single
    observer's own ``request_timed`` (and its ``clock``, if it has one) when it has one, else
    ``on_finish`` with the duration measured here on ``perf_counter``."""
    if len(observers) == 1 and not access_log and _defines(observers[0], "request_timed"):
        only = observers[0]
        return only.request_timed, (only.clock if _defines(only, "clock") else perf_counter)

    def timed(
        request: Request, route: str | None, method: str, status: int, started: float
    ) -> None:
        on_finish(request, route, status, perf_counter() - started)

    return timed, perf_counter


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

    # Slots: the protocol reads a dozen of these per request, and a plain instance with this
    # many attributes would lose Python's fast path for reading them (shared-key dicts stop
    # at 30 keys).
    __slots__ = (
        "__weakref__",
        "_presets",
        "_tick",
        "_timer",
        "access_log",
        "active",
        "app",
        "base",
        "clock",
        "conns",
        "date",
        "fallback",
        "handlers",
        "header_timeout",
        "keepalive_timeout",
        "limits",
        "lookup",
        "loop",
        "max_body_size",
        "max_concurrency",
        "max_header_count",
        "max_header_size",
        "max_keepalive_requests",
        "now",
        "observers",
        "on_enter",
        "on_finish",
        "on_start",
        "on_timed",
        "router",
        "targets",
        "watched",
        "ws_observer",
        "ws_routes",
    )

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
        self.observers = observers = tuple(observers)
        self.access_log = access_log
        self.active = 0
        # Context variables every request starts with (`preset`), and the context each request
        # copies: made on the first connection, from its context (which every connection's
        # copies too), with them set.
        self._presets: dict[contextvars.ContextVar[Any], Any] = {}
        self.base: contextvars.Context | None = None  # set on attach
        self.header_timeout = limits.header_timeout
        self.max_header_count = limits.max_header_count
        self.max_header_size = limits.max_header_size
        self.max_body_size = limits.max_body_size
        self.max_keepalive_requests = limits.max_keepalive_requests
        self.max_concurrency = limits.max_concurrency
        self.keepalive_timeout = limits.keepalive_timeout
        # Observers that time requests or an access log: only then is the clock read per
        # request (one perf_counter pair), and each side is at most one call, composed here
        # rather than per request. An observer with only request_entered is not timed.
        timing = tuple(
            o
            for o in observers
            if _defines(o, "request_finished")
            or _defines(o, "request_timed")
            or not _defines(o, "request_entered")
        )
        self.on_start, self.on_finish = _compose(timing, access_log)
        self.watched = bool(timing or access_log)
        self.on_timed, self.clock = _timed(timing, access_log, self.on_finish)
        # request_started is called through on_enter (the hook the protocol calls with each
        # request just before its handler starts anyway): no test of its own per request.
        self.on_enter = _entered(observers, self.on_start)
        for observer in observers:
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

    def preset(self, var: contextvars.ContextVar[Any], value: Any) -> None:
        """Every request of this server starts with ``var`` set to ``value``, at no cost per
        request (an observer calls this from ``bind_server``: a tracer marks requests as
        "not sampled" until its wrapper says otherwise). Each request's context is then a copy
        of one made on the server's first connection (as it is without presets), which is the
        same as its own connection's unless something set variables in that one's context."""
        self._presets[var] = value
        self.base = None  # made again, with it, on the next attach

    def _base(self) -> contextvars.Context:
        base = contextvars.copy_context()
        for var, value in self._presets.items():
            base.run(var.set, value)
        return base

    def attach(self, conn: HTTPProtocol) -> None:
        self.conns.add(conn)
        loop = asyncio.get_running_loop()
        if self.base is None:
            self.base = self._base()
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
