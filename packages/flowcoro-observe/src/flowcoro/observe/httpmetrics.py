"""HTTP server request metrics: a request observer costing tens of nanoseconds a request.

flowcoro-http calls one method synchronously after every request: on its fast path (a complete
response written at once) ``request_timed(request, route, method, status, started)``, where the
recorder reads the clock itself, else ``request_finished(request, route, status, duration)``;
that is the only per-request call. Both are the bound methods of a `Recorder` — the compiled
``flowcoro.observe._recorder`` when it was built, else its pure-Python twin
``flowcoro.observe._pyrecorder`` — so the protocol calls them with no wrapper frame: the cell of
(route template, method, status) gets one count in the duration's bucket and the duration added
to its sum. Status classes, counts and the exposition are derived at scrape time.

No ``request_started``: requests in flight are read at scrape time from the live
``ServerState.active`` of every server the observer is bound to (``bind_server``, held weakly).

Label cardinality is bounded: the route is the matched template (``"unmatched"`` when none
matched, never the raw path), unknown methods collapse to ``_OTHER`` (as OpenTelemetry does), and
statuses outside 100-599 to 0 (class ``other``).
"""

from __future__ import annotations

import os
import time
import weakref
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client.metrics_core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.samples import Exemplar

from flowcoro.observe._pyrecorder import KNOWN_METHODS
from flowcoro.observe._pyrecorder import Countdown as PyCountdown
from flowcoro.observe._pyrecorder import Recorder as PyRecorder
from flowcoro.observe._pyrecorder import clock_source as py_clock_source
from flowcoro.observe.instruments import DEFAULT_BUCKETS, cumulative_buckets, histogram_buckets

__all__ = [
    "IMPLEMENTATION",
    "KNOWN_METHODS",
    "UNMATCHED",
    "Countdown",
    "Recorder",
    "RequestMetrics",
    "clock_source",
]

UNMATCHED = "unmatched"

_Sampled = tuple[int | str, float, float]  # an exemplar to be: (trace id, duration, wall time)

Recorder: type[PyRecorder]
Countdown: type[PyCountdown]  # the tracer's per-request head-sampling decision
# FLOWCORO_OBSERVE_PURE_PYTHON=1 forces the pure-Python twins (tests and comparisons).
if os.environ.get("FLOWCORO_OBSERVE_PURE_PYTHON", "") in ("", "0"):
    try:
        from flowcoro.observe._recorder import Countdown as _CCountdown
        from flowcoro.observe._recorder import Recorder as _CRecorder
        from flowcoro.observe._recorder import clock_source as _c_clock_source

        Recorder = _CRecorder  # type: ignore[assignment]
        Countdown = _CCountdown  # type: ignore[assignment]
        clock_source = _c_clock_source
    except ImportError:  # pragma: no cover - installed without a C compiler
        Recorder, Countdown, clock_source = PyRecorder, PyCountdown, py_clock_source
else:  # pragma: no cover - exercised in a subprocess by the tests
    Recorder, Countdown, clock_source = PyRecorder, PyCountdown, py_clock_source

#: ``"c"`` when the compiled aggregation is in use, ``"python"`` otherwise.
IMPLEMENTATION = "python" if Recorder is PyRecorder else "c"


class RequestMetrics:
    """The ``flowcoro_http_observers`` object; also a prometheus_client collector of
    ``http_server_request_duration_seconds`` and ``http_server_active_requests``."""

    __slots__ = (
        "_bounds",
        "_exemplars",
        "_recorder",
        "_servers",
        "_tracing",
        "clock",
        "request_finished",
        "request_timed",
    )

    def __init__(
        self, buckets: Sequence[float] = DEFAULT_BUCKETS, recorder: type[PyRecorder] | None = None
    ) -> None:
        self._bounds = histogram_buckets(buckets)
        self._recorder = (recorder or Recorder)(self._bounds)
        # The recorder's bound methods themselves: the protocol calls them directly (its fast
        # path calls request_timed, which reads the clock in the recorder).
        self.request_finished = self._recorder.request_finished
        self.request_timed = self._recorder.request_timed
        # The clock request_timed reads: flowcoro-http reads it for the start (see clock_source).
        self.clock = self._recorder.clock
        # With tracing on (`trace`), the tracer: this one observer then does both (see
        # request_entered), and the protocol keeps calling the recorder directly.
        self._tracing: Any = None
        self._servers: weakref.WeakSet[Any] = weakref.WeakSet()
        # (route, method, status class) -> per bucket, the latest sampled request's (trace id,
        # duration, wall time): made into Exemplars at scrape time, not per request.
        self._exemplars: dict[tuple[str, str, str], list[_Sampled | None]] = {}

    def bind_server(self, state: Any) -> None:
        """flowcoro-http hands over each `ServerState` this observer serves (held weakly):
        its ``active`` is the count of requests being handled now."""
        self._servers.add(state)
        if self._tracing is not None:
            self._tracing.bind_server(state)

    def trace(self, tracing: Any) -> None:
        """Make this observer also ``tracing``'s (an `HTTPTracing`; None: no tracing): its
        ``request_entered`` and ``bind_server``. Before the app is wired."""
        self._tracing = tracing

    @property
    def request_entered(self) -> Any:
        """The tracer's hook (flowcoro-http reads it once, at wiring), None without tracing."""
        tracing = self._tracing
        return None if tracing is None else tracing.request_entered

    @property
    def active(self) -> int:
        """Requests in flight now, over every bound server."""
        return sum(int(getattr(state, "active", 0)) for state in list(self._servers))

    def record_exemplar(
        self, route: str | None, method: str, status: int, duration: float, trace_id: int | str
    ) -> None:
        """Link the bucket of this request to its trace (called by the tracer for sampled
        requests only); ``trace_id`` as an int or its 32 hex digits."""
        key = (route or UNMATCHED, method if method in KNOWN_METHODS else "_OTHER", _klass(status))
        slots = self._exemplars.get(key)
        if slots is None:
            slots = self._exemplars[key] = [None] * (len(self._bounds) + 1)
        slots[bisect_left(self._bounds, duration)] = (trace_id, duration, time.time())

    def exemplars(self, key: tuple[str, str, str]) -> list[Exemplar | None] | None:
        """The exemplar of each bucket of ``key`` (route, method, status class), None where
        no sampled request fell; None for a key without any."""
        slots = self._exemplars.get(key)
        if slots is None:
            return None
        return [
            None
            if slot is None
            else Exemplar(
                {"trace_id": slot[0] if isinstance(slot[0], str) else f"{slot[0]:032x}"},
                slot[1],
                slot[2],
            )
            for slot in slots
        ]

    def totals(self) -> dict[tuple[str, str, str], tuple[list[int], float]]:
        """Bucket counts and sums by (route, method, status class)."""
        out: dict[tuple[str, str, str], tuple[list[int], float]] = {}
        for route, method, status, counts, total in self._recorder.snapshot():
            key = (route or UNMATCHED, method, _klass(status))
            known = out.get(key)
            if known is None:
                out[key] = (counts, total)
            else:
                out[key] = (
                    [a + b for a, b in zip(known[0], counts, strict=True)],
                    known[1] + total,
                )
        return out

    def collect(self) -> Iterator[Metric]:
        duration = HistogramMetricFamily(
            "http_server_request_duration_seconds",
            "Duration of HTTP server requests, by method, route template and status class",
            labels=["http_request_method", "http_route", "http_response_status_class"],
            unit="",
        )
        for (route, method, klass), (counts, total) in sorted(self.totals().items()):
            duration.add_metric(
                [method, route, klass],
                cumulative_buckets(self._bounds, counts, self.exemplars((route, method, klass))),
                total,
            )
        active = GaugeMetricFamily(
            "http_server_active_requests", "HTTP server requests being handled now"
        )
        active.add_metric([], self.active)
        yield duration
        yield active


_CLASSES = {n: f"{n}xx" for n in range(1, 6)}


def _klass(status: int) -> str:
    return _CLASSES[status // 100] if 100 <= status <= 599 else "other"
