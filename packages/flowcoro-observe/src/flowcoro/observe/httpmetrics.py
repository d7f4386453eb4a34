"""HTTP server request metrics: a request observer costing a few hundred nanoseconds a request.

The HTTP protocol calls ``request_started(request)`` and
``request_finished(request, route, status, duration)`` synchronously for every request. Here:

- ``request_started`` is ``functools.partial(next, itertools.count())``: a C call that advances a
  counter and returns (``next(it, request)`` uses the request only as the ignored default). The
  in-flight gauge is computed at scrape time as *started - finished*, so nothing else runs at the
  start of a request.
- ``request_finished`` finds the bucket list of (route template, method, status) in nested dicts
  (a miss builds it once), adds one to the bucket chosen by ``bisect`` and the duration to the
  sum. Status classes and the count are derived at scrape time.

Label cardinality is bounded: the route is the matched template (``"unmatched"`` when none
matched, never the raw path), unknown methods collapse to ``_OTHER`` (as OpenTelemetry does), and
statuses outside 100-599 to 0.
"""

from __future__ import annotations

import itertools
import re
import time
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from functools import partial
from typing import Any

from prometheus_client.metrics_core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.samples import Exemplar

from flowcoro.observe.instruments import DEFAULT_BUCKETS, cumulative_buckets, histogram_buckets

__all__ = ["KNOWN_METHODS", "UNMATCHED", "RequestMetrics"]

KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"}
)
UNMATCHED = "unmatched"
_COUNT = re.compile(r"^count\((\d+)\)$")

# route -> method -> status -> [bucket counts..., sum]
Cells = dict[Any, dict[str, dict[int, list[Any]]]]


def _started(counter: itertools.count[int]) -> int:
    """How many times the counter advanced (read from its repr: it has no other read-out)."""
    match = _COUNT.match(repr(counter))
    return int(match.group(1)) if match else 0


class RequestMetrics:
    """The ``flowcoro_http_observers`` object; also a prometheus_client collector of
    ``http_server_request_duration_seconds`` and ``http_server_active_requests``."""

    __slots__ = ("_bounds", "_cells", "_counter", "_exemplars", "request_started")

    def __init__(self, buckets: Sequence[float] = DEFAULT_BUCKETS) -> None:
        self._bounds = histogram_buckets(buckets)
        self._cells: Cells = {}
        self._counter = itertools.count()
        self.request_started = partial(next, self._counter)
        # (route, method, status class) -> per-bucket latest exemplar
        self._exemplars: dict[tuple[str, str, str], list[Exemplar | None]] = {}

    def request_finished(
        self, request: Any, route: str | None, status: int, duration: float
    ) -> None:
        try:
            cell = self._cells[route][request.method][status]
        except KeyError:
            cell = self._cell(route, request.method, status)
        cell[bisect_left(self._bounds, duration)] += 1
        cell[-1] += duration

    def _cell(self, route: str | None, method: str, status: int) -> list[Any]:
        if method not in KNOWN_METHODS:
            method = "_OTHER"
        if not isinstance(status, int) or not 100 <= status <= 599:
            status = 0
        by_method = self._cells.setdefault(route, {})
        by_status = by_method.setdefault(method, {})
        cell = by_status.get(status)
        if cell is None:
            cell = by_status[status] = [0] * (len(self._bounds) + 1) + [0.0]
        return cell

    def record_exemplar(
        self, route: str | None, method: str, status: int, duration: float, trace_id: str
    ) -> None:
        """Link the bucket of this request to its trace (called by the tracing middleware for
        sampled requests only)."""
        key = (route or UNMATCHED, method if method in KNOWN_METHODS else "_OTHER", _klass(status))
        slots = self._exemplars.get(key)
        if slots is None:
            slots = self._exemplars[key] = [None] * (len(self._bounds) + 1)
        slots[bisect_left(self._bounds, duration)] = Exemplar(
            {"trace_id": trace_id}, duration, time.time()
        )

    @property
    def started(self) -> int:
        return _started(self._counter)

    def totals(self) -> dict[tuple[str, str, str], tuple[list[int], float]]:
        """Bucket counts and sums by (route, method, status class)."""
        out: dict[tuple[str, str, str], tuple[list[int], float]] = {}
        for route, by_method in list(self._cells.items()):
            for method, by_status in list(by_method.items()):
                for status, cell in list(by_status.items()):
                    key = (route or UNMATCHED, method, _klass(status))
                    counts = cell[:-1]
                    known = out.get(key)
                    if known is None:
                        out[key] = (counts, cell[-1])
                    else:
                        out[key] = (
                            [a + b for a, b in zip(known[0], counts, strict=True)],
                            known[1] + cell[-1],
                        )
        return out

    def collect(self) -> Iterator[Metric]:
        duration = HistogramMetricFamily(
            "http_server_request_duration_seconds",
            "Duration of HTTP server requests, by method, route template and status class",
            labels=["http_request_method", "http_route", "http_response_status_class"],
            unit="",
        )
        finished = 0
        for (route, method, klass), (counts, total) in sorted(self.totals().items()):
            finished += sum(counts)
            duration.add_metric(
                [method, route, klass],
                cumulative_buckets(
                    self._bounds, counts, self._exemplars.get((route, method, klass))
                ),
                total,
            )
        active = GaugeMetricFamily(
            "http_server_active_requests", "HTTP server requests being handled now"
        )
        active.add_metric([], max(0, self.started - finished))
        yield duration
        yield active


def _klass(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status <= 599 else "other"
