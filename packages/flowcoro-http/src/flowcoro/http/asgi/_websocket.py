"""The ASGI ``websocket`` scope on the flowcoro HTTP protocol.

`from_asgi` registers an `ASGIWebSocketRoute` for every path: the protocol hands an Upgrade
request to it (through `flowcoro.http.ws._server.upgrade`). The handshake is checked by the
``websockets`` ``ServerProtocol`` at once (a bad one is answered 400/426 without calling the
application), but the 101 is only written when the application sends ``websocket.accept``
(with its subprotocol and headers); ``websocket.close`` before that is a 403. Framing, limits,
heartbeat and backpressure are those of `flowcoro.http.ws.WebSocket`: this module only
translates ASGI messages to its API. ``send`` on a closed connection raises `WebSocketClosed`
(a `ConnectionError`, so an `OSError` as ASGI spec 2.4 asks).
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import TYPE_CHECKING, Any

from websockets.datastructures import Headers
from websockets.http11 import Request as WSRequest
from websockets.http11 import Response as WSResponse
from websockets.server import ServerProtocol

from flowcoro.core.logger import get_logger
from flowcoro.http.ws._connection import WebSocket, WebSocketClosed
from flowcoro.http.ws._observed import Observing
from flowcoro.http.ws._options import WSOptions
from flowcoro.http.ws._server import WebSocketRoute, deflate_server

if TYPE_CHECKING:
    from flowcoro.http.asgi.server import ASGIBridge
    from flowcoro.http.protocol import HTTPProtocol
    from flowcoro.http.request import Request

__all__ = ["ASGIWebSocket", "ASGIWebSocketRoute"]

log = get_logger("flowcoro.http.asgi")

# Bytes a client may send before the handshake is answered (a well-behaved one sends none).
_EARLY_LIMIT = 64 * 1024

_PENDING, _ACCEPTED, _REJECTED = 0, 1, 2


class ASGIWebSocket(WebSocket):
    """A `WebSocket` whose opening handshake waits for the ASGI application's decision, with
    the ASGI ``receive`` and ``send`` callables."""

    def __init__(
        self, proto: ServerProtocol, options: WSOptions, request: Request, response: WSResponse
    ) -> None:
        super().__init__(proto, options, request)
        self._server_proto = proto  # typed as the server side, for the handshake answer
        self._response = response  # the 101 prepared by ServerProtocol.accept, not sent yet
        self._phase = _PENDING
        self._connect_sent = False
        self._decided: asyncio.Future[None] | None = None
        self._early: list[bytes] = []
        self._early_size = 0

    # -- before the handshake is answered -----------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._phase != _PENDING:
            super().data_received(data)
            return
        # Frames sent before our 101 are kept (bounded) and read once the application accepts.
        self._early.append(data)
        self._early_size += len(data)
        if self._early_size > _EARLY_LIMIT:
            self.cut()

    def eof_received(self) -> bool | None:
        if self._phase == _PENDING:
            return False  # the client gave up before the answer: close
        return super().eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._decide()

    def _decide(self) -> None:
        fut = self._decided
        if fut is not None and not fut.done():
            fut.set_result(None)

    def _accept(self, message: dict[str, Any]) -> None:
        if self.closed:
            raise WebSocketClosed(1006, "the client went away before the handshake")
        response = self._response
        subprotocol = message.get("subprotocol")
        if subprotocol is not None:
            if not isinstance(subprotocol, str):
                raise TypeError("ASGI websocket.accept: subprotocol must be a str or None")
            response.headers["Sec-WebSocket-Protocol"] = subprotocol
            self._proto.subprotocol = subprotocol  # type: ignore[assignment]
        for name, value in message.get("headers", ()):
            key = bytes(name).decode("latin-1")
            if key.lower() == "sec-websocket-protocol":
                continue  # the subprotocol field decides
            response.headers[key] = bytes(value).decode("latin-1")
        proto = self._server_proto
        proto.send_response(response)
        # As in flowcoro.http.ws._server.upgrade: our HTTP parser read the request, so restart
        # the layer's parser now that the state is OPEN, to read frames.
        proto.parser = proto.parse()
        next(proto.parser)
        self._phase = _ACCEPTED
        self._flush()
        self._started()
        if isinstance(self, Observing):
            self._report_open()
        self._decide()
        early, self._early = self._early, []
        if early:
            super().data_received(b"".join(early))

    def reject(self, status: int, text: str) -> None:
        """Answer the handshake with an HTTP error (the connection then closes)."""
        self._phase = _REJECTED
        self._early.clear()
        if not self.closed:
            proto = self._server_proto
            proto.send_response(proto.reject(status, text))
            self._flush()
        self._decide()

    def _start_close(self, code: int, reason: str) -> None:
        """Send the close frame without waiting for the peer's (as other ASGI servers do);
        the connection is cut if the peer does not finish the handshake in close_timeout."""
        self._proto.send_close(code, reason)
        self._flush()
        self._expect_close()

    # -- ASGI ---------------------------------------------------------------------------------

    async def asgi_receive(self) -> dict[str, Any]:
        if not self._connect_sent:
            self._connect_sent = True
            return {"type": "websocket.connect"}
        if self._phase == _PENDING and not self.closed:
            fut = self._decided
            if fut is None:
                fut = self._decided = asyncio.get_running_loop().create_future()
            await asyncio.shield(fut)
        if self._phase != _ACCEPTED:
            return {"type": "websocket.disconnect", "code": 1006, "reason": ""}
        try:
            data = await self.receive()
        except WebSocketClosed as exc:
            return {"type": "websocket.disconnect", "code": exc.code, "reason": exc.reason}
        if isinstance(data, str):
            return {"type": "websocket.receive", "text": data}
        return {"type": "websocket.receive", "bytes": data}

    async def asgi_send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "websocket.send":
            if self._phase != _ACCEPTED:
                raise RuntimeError("ASGI: websocket.send before websocket.accept")
            text = message.get("text")
            if text is not None:
                await self.send(text)
                return
            data = message.get("bytes")
            if data is None:
                raise ValueError("ASGI websocket.send: one of 'text' or 'bytes' is required")
            await self.send(bytes(data))
            return
        if kind == "websocket.close":
            if self._phase == _PENDING:
                # Closing before accepting rejects the handshake (ASGI spec: HTTP 403).
                self.reject(403, "Forbidden: the application refused the WebSocket.\n")
                return
            if not self.open:
                raise self._closed_error()
            self._start_close(message.get("code", 1000), message.get("reason") or "")
            return
        if kind == "websocket.accept":
            if self._phase != _PENDING:
                raise RuntimeError("ASGI: websocket.accept sent twice or after a close")
            self._accept(message)
            return
        raise RuntimeError(f"ASGI: unexpected message type {kind!r} on a websocket scope")


class ObservedASGIWebSocket(Observing, ASGIWebSocket):
    """An `ASGIWebSocket` that tells the app's WebSocket observers what happens (opened when the
    application accepts), as `flowcoro.http.ws._observed.ObservedWebSocket` does."""


class ASGIWebSocketRoute(WebSocketRoute):
    """The WebSocket route of an ASGI application: every Upgrade request runs the application
    with a ``websocket`` scope."""

    __slots__ = ("bridge",)

    def __init__(self, bridge: ASGIBridge, options: WSOptions) -> None:
        super().__init__(_unused, options)
        self.bridge = bridge

    def take_over(self, http: HTTPProtocol, req: Request) -> None:
        """Check the handshake, move the connection to an `ASGIWebSocket` and start the
        application; called by `flowcoro.http.ws._server.upgrade`."""
        transport = http.transport
        assert transport is not None
        options = self.options
        proto = ServerProtocol(
            extensions=[deflate_server()] if options.compression else None,
            max_size=options.max_size,
        )
        headers = Headers()
        for name, value in req.headers.raw:
            headers[name.decode("latin-1")] = value.decode("latin-1")
        query = req.query_string.decode("latin-1")
        target = req.path + ("?" + query if query else "")
        response = proto.accept(WSRequest(target, headers))
        state = http._s
        ws: ASGIWebSocket
        if state.ws_observer is None:
            ws = ASGIWebSocket(proto, options, req, response)
        else:
            ws = ObservedASGIWebSocket(proto, options, req, response)
            ws._observe(state.ws_observer, state.ws_routes.get(self))
        server = http.server
        # The HTTP side of this connection is over (as in upgrade): the WebSocket takes its place.
        http.connection_lost(None)
        ws.server = server
        transport.set_protocol(ws)
        ws.connection_made(transport)
        if response.status_code != 101:
            # A bad handshake (version, key): answered by the layer, the application never runs.
            ws._phase = _REJECTED
            proto.send_response(response)
            ws._flush()
            return
        bridge = self.bridge
        scope = bridge.websocket_scope(req)
        loop = asyncio.get_running_loop()
        task = loop.create_task(_run(bridge, scope, ws), context=contextvars.copy_context())
        bridge.tasks.add(task)
        task.add_done_callback(bridge.tasks.discard)


async def _unused(ws: WebSocket) -> None:  # pragma: no cover - take_over runs the application
    raise RuntimeError("the ASGI WebSocket route runs its application through take_over")


async def _run(bridge: ASGIBridge, scope: dict[str, Any], ws: ASGIWebSocket) -> None:
    try:
        await bridge.app(scope, ws.asgi_receive, ws.asgi_send)
    except asyncio.CancelledError:
        ws.cut()
        raise
    except Exception as exc:
        if ws._phase == _PENDING:
            ws.reject(500, "Internal Server Error\n")
        elif ws.open:
            ws._start_close(1011, "internal error")
        if isinstance(exc, WebSocketClosed):
            return  # the application wrote to a connection the client had closed
        log.error("asgi.websocket_app_error", path=scope["path"], exc_info=exc)
        return
    if ws._phase == _PENDING:
        if not ws.closed:  # the client is still there: it gets a 500
            log.error("asgi.websocket_no_handshake", path=scope["path"])
        ws.reject(500, "Internal Server Error\n")
    elif ws.open:
        ws._start_close(1000, "")
