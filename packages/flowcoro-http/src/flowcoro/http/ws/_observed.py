"""`ObservedWebSocket`: a `WebSocket` that tells the app's WebSocket observers what happens.

`flowcoro.http.ws._server.upgrade` builds one instead of a plain `WebSocket` only when the app
has observers (``flowcoro_http_ws_observers``), so unobserved connections run the plain class
and pay nothing. Every message is reported whole (after fragments are assembled), with its
payload size in bytes; an observer's exception is logged and never reaches the connection.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from websockets.protocol import OPEN, Protocol, Side

from flowcoro.core.logger import get_logger
from flowcoro.http.ws._connection import Data, WebSocket
from flowcoro.http.ws._options import WSOptions

if TYPE_CHECKING:
    from flowcoro.http.request import Request
    from flowcoro.http.state import WebSocketObserver

__all__ = ["Observing", "ObservedWebSocket"]

log = get_logger("flowcoro.http.ws")


def _size(data: Data) -> int:
    """Payload bytes: a str is sent as UTF-8 (``isascii`` is a flag check: no encoding then)."""
    if isinstance(data, str) and not data.isascii():
        return len(data.encode())
    return len(data)


class Observing(WebSocket):
    """What an observed connection adds to its `WebSocket` class (first base of
    `ObservedWebSocket`, and of the ASGI bridge's observed class): `_observe` sets it up."""

    _observer: WebSocketObserver
    _route: str | None
    _reported_open = False

    def _observe(self, observer: WebSocketObserver, route: str | None) -> None:
        self._observer = observer
        self._route = route

    def _report_open(self) -> None:
        """The handshake succeeded (called by `upgrade`)."""
        self._reported_open = True
        try:
            self._observer.websocket_opened(self._route)
        except Exception:
            log.exception("http.ws_observer_failed", observer=repr(self._observer))

    def _report(self, received: bool, text: bool, size: int) -> None:
        try:
            self._observer.websocket_message(self._route, received, text, size)
        except Exception:
            log.exception("http.ws_observer_failed", observer=repr(self._observer))

    def _message(self, data: bytes, text: bool) -> None:
        if self._proto.state is OPEN:
            self._report(True, text, len(data))
        super()._message(data, text)

    def send_nowait(self, data: Data) -> None:
        super().send_nowait(data)
        self._report(False, isinstance(data, str), _size(data))

    def write_prepared(self, frame: bytes, data: Data) -> None:
        proto = self._proto
        # The same test as WebSocket.write_prepared: its fallback is send_nowait, which reports.
        direct = not (
            proto.extensions or proto.side is not Side.SERVER or proto.expect_continuation_frame
        )
        super().write_prepared(frame, data)
        if direct:
            self._report(False, isinstance(data, str), _size(data))

    async def send_fragments(self, parts: list[Data]) -> None:
        await super().send_fragments(parts)
        self._report(False, isinstance(parts[0], str), sum(_size(p) for p in parts))

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self._reported_open:
            self._reported_open = False
            code = self.close_code
            try:
                self._observer.websocket_closed(self._route, 1006 if code is None else code)
            except Exception:
                log.exception("http.ws_observer_failed", observer=repr(self._observer))


class ObservedWebSocket(Observing):
    def __init__(
        self,
        proto: Protocol,
        options: WSOptions,
        request: Request | None,
        observer: WebSocketObserver,
        route: str | None,
    ) -> None:
        super().__init__(proto, options, request)
        self._observe(observer, route)
