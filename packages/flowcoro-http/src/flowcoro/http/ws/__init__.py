"""WebSocket for flowcoro-http: server routes (``@app.websocket``), the client (`connect_ws`)
and the rooms hub (`Hub`), on the ``websockets`` library's sans-I/O protocol."""

from __future__ import annotations

from flowcoro.http.ws._connection import WebSocket, WebSocketClosed, WebSocketError
from flowcoro.http.ws._options import WSOptions
from flowcoro.http.ws._server import WebSocketRoute
from flowcoro.http.ws.client import WebSocketHandshakeError, connect_ws
from flowcoro.http.ws.hub import Hub

__all__ = [
    "WebSocket",
    "WebSocketClosed",
    "WebSocketError",
    "WebSocketHandshakeError",
    "WebSocketRoute",
    "WSOptions",
    "Hub",
    "connect_ws",
]
