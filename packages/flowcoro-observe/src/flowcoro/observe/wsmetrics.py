"""WebSocket metrics through flowcoro-http's ``flowcoro_http_ws_observers`` hook.

Per route template (label ``http_route``, never the raw path):

- ``websocket_connections_total`` (counter) and ``websocket_connections_active`` (gauge):
  connections opened (handshake done) and open now;
- ``websocket_connections_closed_total`` (counter, label ``websocket_close_code``): how they
  ended (1000 normal, 1001 going away, 1006 without a closing handshake, ...);
- ``websocket_messages_total`` and ``websocket_message_bytes_total`` (counters, labels
  ``direction`` = ``receive`` / ``send`` and ``type`` = ``text`` / ``binary``): whole messages
  and their payload bytes (UTF-8 for text, before compression).

The cost is a dict lookup and two list increments per message (tens of nanoseconds against the
microseconds a message costs), a few dict operations per connection; nothing when the app has no
WebSocket routes.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

__all__ = ["WebSocketMetrics"]

UNMATCHED = "unmatched"

# Index of (received, text) in a route's message cell: [count x 4, bytes x 4].
_SLOTS = (("send", "binary"), ("send", "text"), ("receive", "binary"), ("receive", "text"))


class WebSocketMetrics:
    """The ``flowcoro_http_ws_observers`` object; also a prometheus_client collector."""

    __slots__ = ("_active", "_closed", "_messages", "_opened")

    def __init__(self) -> None:
        self._opened: dict[str | None, int] = {}
        self._active: dict[str | None, int] = {}
        self._closed: dict[tuple[str | None, int], int] = {}
        # route -> [messages by slot (4), bytes by slot (4)]
        self._messages: dict[str | None, list[int]] = {}

    def websocket_opened(self, route: str | None) -> None:
        self._opened[route] = self._opened.get(route, 0) + 1
        self._active[route] = self._active.get(route, 0) + 1

    def websocket_message(self, route: str | None, received: bool, text: bool, size: int) -> None:
        cell = self._messages.get(route)
        if cell is None:
            cell = self._messages[route] = [0] * 8
        slot = received * 2 + text
        cell[slot] += 1
        cell[slot + 4] += size

    def websocket_closed(self, route: str | None, code: int) -> None:
        self._active[route] = self._active.get(route, 0) - 1
        key = (route, code)
        self._closed[key] = self._closed.get(key, 0) + 1

    def collect(self) -> Iterator[Metric]:
        opened = CounterMetricFamily(
            "websocket_connections",
            "WebSocket connections opened (handshake completed), by route template",
            labels=["http_route"],
        )
        active = GaugeMetricFamily(
            "websocket_connections_active",
            "WebSocket connections open now, by route template",
            labels=["http_route"],
        )
        closed = CounterMetricFamily(
            "websocket_connections_closed",
            "WebSocket connections ended, by route template and close code",
            labels=["http_route", "websocket_close_code"],
        )
        messages = CounterMetricFamily(
            "websocket_messages",
            "Whole WebSocket messages, by route template, direction and type",
            labels=["http_route", "direction", "type"],
        )
        size = CounterMetricFamily(
            "websocket_message_bytes",
            "Payload bytes of WebSocket messages (before compression), by route template, "
            "direction and type",
            labels=["http_route", "direction", "type"],
        )
        for route, count in sorted(self._opened.items(), key=_by_route):
            name = route or UNMATCHED
            opened.add_metric([name], count)
            active.add_metric([name], max(0, self._active.get(route, 0)))
        for (route, code), count in sorted(self._closed.items(), key=lambda kv: repr(kv[0])):
            closed.add_metric([route or UNMATCHED, str(code)], count)
        for route, cell in sorted(self._messages.items(), key=_by_route):
            for slot, (direction, kind) in enumerate(_SLOTS):
                if cell[slot]:
                    messages.add_metric([route or UNMATCHED, direction, kind], cell[slot])
                    size.add_metric([route or UNMATCHED, direction, kind], cell[slot + 4])
        yield opened
        yield active
        yield closed
        yield messages
        yield size


def _by_route(item: tuple[str | None, object]) -> str:
    return item[0] or ""
