"""Hook specifications of flowcoro-http (registered by `flowcoro.http.plugin`).

All are called once, when an `App` is wired (its first `protocol_factory()`), never per request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowcoro.core.hookspecs import hookspec

if TYPE_CHECKING:
    from flowcoro.http.app import App
    from flowcoro.http.middleware import Middleware
    from flowcoro.http.protocol import RequestObserver
    from flowcoro.http.routing import Route
    from flowcoro.http.state import WebSocketObserver


@hookspec
def flowcoro_http_middleware(app: App) -> list[Middleware]:
    """Return middleware (``async def mw(request, call_next)``) wrapped around every route of
    ``app``, outside the app's own middleware."""


@hookspec
def flowcoro_http_routes(app: App) -> list[Route]:
    """Return routes added to every app (e.g. ``/metrics``, ``/health``)."""


@hookspec
def flowcoro_http_observers(app: App) -> list[RequestObserver]:
    """Return observers with ``request_finished(request, route, status, duration)`` (and, if
    they need them, ``request_started(request)``, ``request_timed(...)`` with ``clock()``,
    ``bind_server(state)`` and ``request_entered(request)``, which may wrap a request's final
    response, as a tracer does; see `RequestObserver`), called synchronously by the protocol
    around every request."""


@hookspec
def flowcoro_http_ws_observers(app: App) -> list[WebSocketObserver]:
    """Return observers of ``app``'s WebSocket connections, with ``websocket_opened(route)``,
    ``websocket_message(route, received, text, size)`` and ``websocket_closed(route, code)``
    (see `WebSocketObserver`), called synchronously on open, per whole message each way, and
    on close. Gathered once per app; with none, WebSocket connections cost nothing more."""
