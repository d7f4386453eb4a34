"""The server side: `WebSocketRoute` (what ``@app.websocket(path)`` registers) and `upgrade`,
which `flowcoro.http.protocol.HTTPProtocol` calls for a GET with ``Upgrade`` on such a route.

The handshake is checked by the ``websockets`` ``ServerProtocol`` (version, key, origin,
subprotocol, extensions); the answer (101, or 400/403/426 for a bad handshake) is written on
the same transport, which is then handed to a `WebSocket` with ``transport.set_protocol``.
The HTTP protocol object leaves the server's registry and the `WebSocket` joins it, so limits,
statistics and the graceful drain (close 1001) see it.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from websockets.datastructures import Headers
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.http11 import Request as WSRequest
from websockets.server import ServerProtocol

from flowcoro.core.logger import get_logger
from flowcoro.http.ws._connection import WebSocket
from flowcoro.http.ws._options import WSOptions

if TYPE_CHECKING:
    from flowcoro.http.protocol import HTTPProtocol
    from flowcoro.http.request import Request

__all__ = ["WebSocketRoute", "upgrade", "deflate_server"]

log = get_logger("flowcoro.http.ws")


def deflate_server() -> ServerPerMessageDeflateFactory:
    """permessage-deflate with bounded memory: 4 KiB windows both ways, memLevel 5.
    Decompressed sizes are bounded by ``max_size`` inside the layer (no zip bombs)."""
    return ServerPerMessageDeflateFactory(
        server_max_window_bits=12,
        client_max_window_bits=12,
        compress_settings={"memLevel": 5},
    )


class WebSocketRoute:
    """The endpoint registered for a WebSocket route: the handler and its options.

    Routes of kind ``WEBSOCKET`` are only looked up for Upgrade requests, so this is never
    called as an HTTP endpoint (a plain GET on a WebSocket-only path gets 405); ``__call__``
    exists because routes require an async callable, and answers 426 should it ever be."""

    __slots__ = ("handler", "options")

    def __init__(self, handler: Callable[..., Any], options: WSOptions) -> None:
        if not inspect.iscoroutinefunction(handler):
            raise TypeError(f"handler {handler!r} must be an async function")
        self.handler = handler
        self.options = options

    async def __call__(self, request: Request, **params: Any) -> Any:  # pragma: no cover
        from flowcoro.http.errors import HTTPException

        raise HTTPException(426, "this endpoint speaks WebSocket", headers={"upgrade": "websocket"})


def upgrade(http: HTTPProtocol, req: Request, route: WebSocketRoute) -> None:
    """Answer the handshake on ``http``'s transport and hand the transport to a `WebSocket`."""
    take_over = getattr(route, "take_over", None)
    if take_over is not None:
        # The ASGI ``websocket`` scope (flowcoro.http.asgi._websocket): the application
        # decides whether to accept, so that route completes the handshake itself, later.
        take_over(http, req)
        return
    transport = http.transport
    assert transport is not None
    options = route.options
    proto = ServerProtocol(
        origins=list(options.origins) if options.origins is not None else None,  # type: ignore[arg-type]
        extensions=[deflate_server()] if options.compression else None,
        subprotocols=list(options.subprotocols) or None,  # type: ignore[arg-type]
        max_size=options.max_size,
    )
    headers = Headers()
    for name, value in req.headers.raw:
        headers[name.decode("latin-1")] = value.decode("latin-1")
    query = req.query_string.decode("latin-1")
    target = req.path + ("?" + query if query else "")
    response = proto.accept(WSRequest(target, headers))
    proto.send_response(response)
    if response.status_code == 101:
        # Our HTTP parser read the request, not the layer's: its parser coroutine still waits
        # for a request line. Restart it now that the state is OPEN, so it reads frames.
        proto.parser = proto.parse()
        next(proto.parser)
    state = http._s
    observer = state.ws_observer
    ws: WebSocket
    if observer is None:
        ws = WebSocket(proto, options, req)
    else:
        from flowcoro.http.ws._observed import ObservedWebSocket

        ws = ObservedWebSocket(proto, options, req, observer, state.ws_routes.get(route))
    server = http.server
    # The HTTP side of this connection is over: it leaves the server (as if the connection
    # ended) and the WebSocket takes its place on the same transport.
    http.connection_lost(None)
    ws.server = server
    transport.set_protocol(ws)
    ws.connection_made(transport)
    ws._flush()
    if response.status_code != 101 or transport.is_closing():
        return
    ws._started()
    if observer is not None:
        ws._report_open()  # type: ignore[attr-defined]
    ctx = contextvars.copy_context()
    loop = asyncio.get_running_loop()
    task = loop.create_task(_run(ws, route.handler), context=ctx)
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)


# Handler tasks are referenced here so that they are not collected while running.
_TASKS: set[asyncio.Task[None]] = set()


async def _run(ws: WebSocket, handler: Callable[..., Any]) -> None:
    try:
        await handler(ws, **ws.path_params)
    except Exception as exc:
        from flowcoro.http.ws._connection import WebSocketClosed

        if isinstance(exc, WebSocketClosed):
            return
        log.error("ws.handler_failed", path=ws.request.path if ws.request else None, exc_info=exc)
        if ws.open:
            await ws.close(1011, "internal error")
        return
    except asyncio.CancelledError:
        ws.cut()
        raise
    if ws.open:
        await ws.close(1000)
