"""`connect_ws(url)`: the WebSocket client, on the same `WebSocket` connection class as the
server (the ``websockets`` ``ClientProtocol`` does the handshake and the masking)."""

from __future__ import annotations

import asyncio
import ssl as _ssl
from typing import Any

from websockets.client import ClientProtocol
from websockets.exceptions import InvalidURI
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.http11 import Response as WSResponse
from websockets.uri import parse_uri

from flowcoro.core.deadline import effective_timeout
from flowcoro.http.ws._connection import WebSocket, WebSocketError
from flowcoro.http.ws._options import WSOptions

__all__ = ["connect_ws", "WebSocketHandshakeError"]


class WebSocketHandshakeError(WebSocketError):
    """The server refused the opening handshake (``status`` is its HTTP status, 0 if none)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class _ClientWebSocket(WebSocket):
    def _event(self, event: Any) -> None:
        fut = self._open_fut
        if not isinstance(event, WSResponse) or fut is None or fut.done():  # pragma: no cover
            return
        exc = self._proto.handshake_exc
        if exc is None:
            self._started()
            fut.set_result(None)
        else:
            error = WebSocketHandshakeError(
                f"the WebSocket handshake failed: {exc}", event.status_code
            )
            error.__cause__ = exc
            fut.set_exception(error)


async def connect_ws(
    url: str,
    *,
    origin: str | None = None,
    headers: dict[str, str] | None = None,
    ssl: _ssl.SSLContext | None = None,
    open_timeout: float | None = 10.0,
    **options: Any,
) -> WebSocket:
    """Open a WebSocket (``ws://`` or ``wss://``); ``options`` are `WSOptions` fields
    (``subprotocols``, ``compression``, ``max_size``, ``ping_interval`` ...)."""
    opts = WSOptions(**options)
    try:
        uri = parse_uri(url)
    except InvalidURI as exc:
        raise ValueError(f"url: {url!r} is not a ws:// or wss:// URL") from exc
    proto = ClientProtocol(
        uri,
        origin=origin,  # type: ignore[arg-type]
        extensions=[
            ClientPerMessageDeflateFactory(
                server_max_window_bits=12,
                client_max_window_bits=12,
                compress_settings={"memLevel": 5},
            )
        ]
        if opts.compression
        else None,
        subprotocols=list(opts.subprotocols) or None,  # type: ignore[arg-type]
        max_size=opts.max_size,
    )
    request = proto.connect()
    for name, value in (headers or {}).items():
        request.headers[name] = value
    loop = asyncio.get_running_loop()
    ws = _ClientWebSocket(proto, opts)
    ws._open_fut = loop.create_future()
    context = ssl if ssl is not None else (_ssl.create_default_context() if uri.secure else None)
    timeout = effective_timeout(open_timeout)
    try:
        async with asyncio.timeout(timeout):
            await loop.create_connection(
                lambda: ws,
                uri.host,
                uri.port,
                ssl=context,
                server_hostname=uri.host if context is not None else None,
            )
            proto.send_request(request)
            ws._flush()
            await ws._open_fut
    except BaseException:
        ws.cut()
        raise
    return ws
