"""flowcoro-observe: Prometheus metrics across workers, OpenTelemetry tracing, health, readiness."""

from __future__ import annotations

from pathlib import Path

from flowcoro.observe._version import __version__
from flowcoro.observe.connections import CONNECTIONS, ConnectionMetrics
from flowcoro.observe.dbmetrics import QUERIES, QueryMetrics
from flowcoro.observe.errors import MetricError, ObserveError, SharedStoreError
from flowcoro.observe.exposition import render
from flowcoro.observe.health import liveness, readiness
from flowcoro.observe.httpmetrics import RequestMetrics
from flowcoro.observe.instruments import (
    DEFAULT_BUCKETS,
    Counter,
    Gauge,
    Histogram,
    MetricsRegistry,
)
from flowcoro.observe.looplag import LoopLagMonitor
from flowcoro.observe.multiprocess import SharedStore
from flowcoro.observe.observe import SETTINGS, Observe
from flowcoro.observe.pools import PoolCollector
from flowcoro.observe.server import MetricsServer
from flowcoro.observe.tracing import (
    HTTPTracing,
    TracingMiddleware,
    client_span,
    configure_tracing,
    extract_context,
    trace_log_fields,
)
from flowcoro.observe.wsmetrics import WebSocketMetrics

#: Directory of the shipped Grafana dashboard (grafana-dashboard.json) and alert rules (alerts.yml).
ASSETS = Path(__file__).parent / "assets"

__all__ = [
    "__version__",
    "ASSETS",
    # the per-app component
    "Observe",
    "SETTINGS",
    "MetricsServer",
    # metrics
    "MetricsRegistry",
    "Counter",
    "Gauge",
    "Histogram",
    "DEFAULT_BUCKETS",
    "RequestMetrics",
    "WebSocketMetrics",
    "PoolCollector",
    "LoopLagMonitor",
    "ConnectionMetrics",
    "CONNECTIONS",
    "QueryMetrics",
    "QUERIES",
    "SharedStore",
    "render",
    # tracing
    "configure_tracing",
    "HTTPTracing",
    "TracingMiddleware",
    "client_span",
    "extract_context",
    "trace_log_fields",
    # health
    "liveness",
    "readiness",
    # errors
    "ObserveError",
    "MetricError",
    "SharedStoreError",
]
