"""The pure-Python twin of the compiled ``flowcoro.observe._recorder`` (same API, same results).

`flowcoro.observe.httpmetrics` uses the compiled module when it was built (an install with a C
compiler) and this one otherwise. Per request: the cell of (route, method, status) is found in
nested dicts (a miss builds it once), one is added to the bucket ``bisect`` picks and the
duration to the sum: ~200 ns, against ~50 ns for the compiled version.
"""

from __future__ import annotations

import itertools
from bisect import bisect_left
from collections.abc import Callable, Sequence
from time import perf_counter
from typing import Any

__all__ = ["KNOWN_METHODS", "Countdown", "Recorder", "clock_source"]

KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"}
)

# route -> method -> status -> [bucket counts..., sum]
Cells = dict[Any, dict[Any, dict[Any, list[Any]]]]


class Recorder:
    """Latency histograms of HTTP requests by (route, method, status)."""

    __slots__ = ("_bounds", "_cells")

    def __init__(self, bounds: Sequence[float]) -> None:
        values = tuple(float(b) for b in bounds)
        if not values:
            raise ValueError("bounds: give at least one finite upper bound")
        if any(not b > a for a, b in itertools.pairwise(values)):
            raise ValueError("bounds must be strictly increasing")
        self._bounds = values
        self._cells: Cells = {}

    @property
    def bounds(self) -> tuple[float, ...]:
        return self._bounds

    #: Now, in seconds, on the clock `request_timed` reads (the compiled twin's may be the TSC).
    clock = staticmethod(perf_counter)

    def request_finished(self, request: Any, route: Any, status: Any, duration: float) -> None:
        """Count one finished request."""
        index = bisect_left(self._bounds, duration)  # first: a bad duration creates no cell
        try:
            cell = self._cells[route][request.method][status]
        except KeyError:
            cell = self._cell(route, request.method, status)
        cell[index] += 1
        cell[-1] += duration

    def request_timed(
        self, request: Any, route: Any, method: Any, status: Any, started: float
    ) -> None:
        """Count one request that started at ``started`` (``time.perf_counter()``) and
        finished now."""
        duration = perf_counter() - started
        index = bisect_left(self._bounds, duration)
        try:
            cell = self._cells[route][method][status]
        except KeyError:
            cell = self._cell(route, method, status)
        cell[index] += 1
        cell[-1] += duration

    def _cell(self, route: Any, method: Any, status: Any) -> list[Any]:
        if method not in KNOWN_METHODS:
            method = "_OTHER"
        if type(status) is not int or not 100 <= status <= 599:
            status = 0
        by_status = self._cells.setdefault(route, {}).setdefault(method, {})
        cell = by_status.get(status)
        if cell is None:
            cell = by_status[status] = [0] * (len(self._bounds) + 1) + [0.0]
        return cell

    def snapshot(self) -> list[tuple[Any, str, int, list[int], float]]:
        """``(route, method, status, bucket counts, sum)`` of every cell."""
        return [
            (route, method, status, cell[:-1], cell[-1])
            for route, by_method in list(self._cells.items())
            for method, by_status in list(by_method.items())
            for status, cell in list(by_status.items())
        ]


_MISSING: Any = object()


class Countdown:
    """The head sampler's decision for a dropped request (the tracer's ``request_entered``): a
    request without a ``traceparent`` while more than one request ``remaining`` before the next
    kept one is counted down and left alone (None); anything else goes to ``slow(request)``,
    which may set ``remaining``."""

    __slots__ = ("remaining", "slow")

    def __init__(self, slow: Callable[[Any], Any]) -> None:
        if not callable(slow):
            raise TypeError("Countdown: slow must be callable")
        self.slow = slow
        #: Root requests until the next kept one, that one included (0: not known yet).
        self.remaining = 0

    def decide(self, request: Any) -> Any:
        if self.remaining > 1 and getattr(request, "traceparent", _MISSING) is None:
            self.remaining -= 1
            return None
        return self.slow(request)


def clock_source() -> str:
    """What `Recorder.clock` reads: here always ``time.perf_counter``."""
    return "perf_counter"
