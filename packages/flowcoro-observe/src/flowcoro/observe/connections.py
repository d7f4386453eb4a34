"""Connection metrics through flowcoro-net's ``flowcoro_net_connection_observers`` hook.

One process-wide observer (the hook takes no app): counts of accepted and active connections by
protocol class (``HTTPProtocol``, a WebSocket protocol, an RPC protocol...). The cost is two dict
operations per *connection*, nothing per request.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

__all__ = ["CONNECTIONS", "ConnectionMetrics"]


class ConnectionMetrics:
    __slots__ = ("_active", "_opened")

    def __init__(self) -> None:
        self._opened: dict[str, int] = {}
        self._active: dict[str, int] = {}

    def connection_opened(self, protocol: Any) -> None:
        kind = type(protocol).__name__
        self._opened[kind] = self._opened.get(kind, 0) + 1
        self._active[kind] = self._active.get(kind, 0) + 1

    def connection_closed(self, protocol: Any) -> None:
        kind = type(protocol).__name__
        self._active[kind] = self._active.get(kind, 0) - 1

    def collect(self) -> Iterator[Metric]:
        opened = CounterMetricFamily(
            "flowcoro_net_connections", "Connections accepted, by protocol", labels=["protocol"]
        )
        active = GaugeMetricFamily(
            "flowcoro_net_connections_active",
            "Connections open now, by protocol",
            labels=["protocol"],
        )
        for kind, count in sorted(self._opened.items()):
            opened.add_metric([kind], count)
            active.add_metric([kind], max(0, self._active.get(kind, 0)))
        yield opened
        yield active


#: The observer the plugin hands to flowcoro-net; every `Observe` exposes it.
CONNECTIONS = ConnectionMetrics()
