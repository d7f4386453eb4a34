"""DB and Redis client instrumentation, ready for a ``flowcoro_db_query_observers`` hook.

flowcoro-db does not offer such a hook yet. The interface this observer expects (proposed to
flowcoro-db; called synchronously around each query or command, wiring-time only):

- ``query_started(info) -> token`` where ``info`` has ``system`` (``"postgresql"``, ``"mysql"``,
  ``"sqlite"``, ``"redis"``), ``operation`` (``"SELECT"``, ``"GET"``), ``statement`` (the
  parametrized SQL text, never values; None for Redis), ``namespace`` (database name or index),
  ``server_address``, ``server_port`` and ``pool_name`` (any may be None);
- ``query_finished(token, error)`` with the exception that ended it, or None.

It records ``db_client_operation_duration_seconds`` (OpenTelemetry's
``db.client.operation.duration``) by system, operation, pool and error type, and, when tracing is
on and the request is sampled, a ``CLIENT`` span named ``"{operation} {namespace}"`` with the
database semantic-convention attributes (not made current: nothing nests inside a query).
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator
from typing import Any

from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client.metrics_core import HistogramMetricFamily, Metric

from flowcoro.observe import tracing
from flowcoro.observe.instruments import DEFAULT_BUCKETS, cumulative_buckets

__all__ = ["QUERIES", "QueryMetrics"]

_LABELS = ["db_system_name", "db_operation_name", "pool_name", "error_type"]


def _attributes(info: Any) -> dict[str, Any]:
    attributes: dict[str, Any] = {"db.system.name": info.system}
    for key, attr in (
        ("operation", "db.operation.name"),
        ("statement", "db.query.text"),
        ("namespace", "db.namespace"),
        ("server_address", "server.address"),
        ("server_port", "server.port"),
    ):
        value = getattr(info, key, None)
        if value is not None:
            attributes[attr] = value
    return attributes


class QueryMetrics:
    __slots__ = ("_bounds", "_cells")

    def __init__(self) -> None:
        self._bounds = DEFAULT_BUCKETS
        # (system, operation, pool, error type) -> [bucket counts..., sum]
        self._cells: dict[tuple[str, str, str, str], list[Any]] = {}

    def query_started(self, info: Any) -> tuple[float, Any, Any]:
        span = None
        if tracing.tracing_active() and not tracing._UNSAMPLED.get():
            operation = getattr(info, "operation", None) or info.system
            namespace = getattr(info, "namespace", None)
            span = tracing.tracer().start_span(
                f"{operation} {namespace}" if namespace is not None else str(operation),
                kind=SpanKind.CLIENT,
                attributes=_attributes(info),
            )
            if not span.is_recording():
                span = None
        return time.perf_counter(), span, info

    def query_finished(self, token: tuple[float, Any, Any], error: BaseException | None) -> None:
        started, span, info = token
        duration = time.perf_counter() - started
        key = (
            str(info.system),
            str(getattr(info, "operation", None) or ""),
            str(getattr(info, "pool_name", None) or ""),
            type(error).__qualname__ if error is not None else "",
        )
        cell = self._cells.get(key)
        if cell is None:
            cell = self._cells[key] = [0] * (len(self._bounds) + 1) + [0.0]
        cell[bisect_left(self._bounds, duration)] += 1
        cell[-1] += duration
        if span is not None:
            if error is not None:
                span.record_exception(error)
                span.set_attribute("error.type", key[3])
                span.set_status(Status(StatusCode.ERROR, str(error)))
            span.end()

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(
            "db_client_operation_duration_seconds",
            "Duration of database client operations (queries, Redis commands)",
            labels=_LABELS,
        )
        for key, cell in sorted(self._cells.items()):
            family.add_metric(
                list(key), cumulative_buckets(self._bounds, cell[:-1], None), cell[-1]
            )
        yield family


#: The process-wide observer handed to flowcoro-db; every `Observe` exposes it.
QUERIES = QueryMetrics()
