"""Cheap metric instruments: plain Python numbers on the hot path, Prometheus families at scrape.

A `prometheus_client` ``Counter.inc()`` costs several microseconds here (a lock, a labels lookup,
a value object); a request budget of 0.2-0.4 µs cannot afford it. These instruments keep each
labelled child as a small object holding plain ints and floats; a `MetricsRegistry` (a
`prometheus_client` custom collector) turns them into metric families only when scraped.

Instruments are updated from the event-loop thread: ``+=`` on an attribute is not atomic across
threads, so code running in other threads should use a `prometheus_client` metric instead (it is
exposed, and summed across workers, too).
"""

from __future__ import annotations

import itertools
import re
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Generic, TypeVar, cast

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.samples import Exemplar

from flowcoro.observe.errors import MetricError

__all__ = [
    "DEFAULT_BUCKETS",
    "Counter",
    "Gauge",
    "Histogram",
    "MetricsRegistry",
    "format_bound",
    "histogram_buckets",
]

#: Seconds; fit request latencies of fast services (sub-millisecond) up to slow ones (10 s).
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise MetricError(f"metric name {name!r} is not a valid Prometheus name")
    return name


def _check_labels(labelnames: Iterable[str]) -> tuple[str, ...]:
    names = tuple(labelnames)
    for label in names:
        if not isinstance(label, str) or not _LABEL.match(label) or label.startswith("__"):
            raise MetricError(f"label name {label!r} is not a valid Prometheus label name")
    if len(set(names)) != len(names):
        raise MetricError(f"label names {names!r} repeat a name")
    return names


def histogram_buckets(buckets: Sequence[float]) -> tuple[float, ...]:
    """Validate upper bounds: finite, strictly increasing, at least one (``+Inf`` is implied)."""
    bounds = tuple(float(b) for b in buckets if b != float("inf"))
    if not bounds:
        raise MetricError("buckets: give at least one finite upper bound")
    if any(b != b for b in bounds) or any(a >= b for a, b in itertools.pairwise(bounds)):
        raise MetricError(f"buckets: {buckets!r} must be strictly increasing numbers")
    return bounds


def format_bound(bound: float) -> str:
    """The ``le`` label value as prometheus_client writes it (``0.5``, ``1.0``, ``+Inf``)."""
    if bound == float("inf"):
        return "+Inf"
    return repr(float(bound))


C = TypeVar("C")


class _Metric(Generic[C]):
    """A named family of children, one per tuple of label values."""

    kind = ""

    def __init__(self, name: str, documentation: str, labelnames: Iterable[str] = ()) -> None:
        self.name = _check_name(name)
        self.documentation = documentation
        self.labelnames = _check_labels(labelnames)
        self._children: dict[tuple[str, ...], C] = {}
        if not self.labelnames:
            self._children[()] = self._new_child()

    def _new_child(self) -> C:
        raise NotImplementedError

    def labels(self, *values: object) -> C:
        """The child for these label values (created on first use; look it up once, keep it)."""
        key = tuple(str(v) for v in values)
        child = self._children.get(key)
        if child is None:
            if len(key) != len(self.labelnames):
                raise MetricError(
                    f"metric {self.name!r} takes labels {self.labelnames!r}, got {len(key)} values"
                )
            child = self._children[key] = self._new_child()
        return child

    def _only(self) -> C:
        if self.labelnames:
            raise MetricError(f"metric {self.name!r} has labels {self.labelnames!r}: use labels()")
        return self._children[()]

    def children(self) -> list[tuple[tuple[str, ...], C]]:
        return list(self._children.items())

    def collect(self) -> Iterator[Metric]:
        raise NotImplementedError


class CounterChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: float = 0

    def inc(self, amount: float = 1) -> None:
        if amount < 0:
            raise MetricError("a counter only goes up: amount must be >= 0")
        self.value += amount


class Counter(_Metric[CounterChild]):
    """A monotonically increasing count. Exposed as ``<name>_total``."""

    kind = "counter"

    def __init__(self, name: str, documentation: str, labelnames: Iterable[str] = ()) -> None:
        super().__init__(name.removesuffix("_total"), documentation, labelnames)

    def _new_child(self) -> CounterChild:
        return CounterChild()

    def inc(self, amount: float = 1) -> None:
        self._only().inc(amount)

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for key, child in self.children():
            family.add_metric(list(key), child.value)
        yield family


class GaugeChild:
    __slots__ = ("function", "value")

    def __init__(self) -> None:
        self.value: float = 0
        self.function: Callable[[], float] | None = None

    def set(self, value: float) -> None:
        self.value = value

    def inc(self, amount: float = 1) -> None:
        self.value += amount

    def dec(self, amount: float = 1) -> None:
        self.value -= amount

    def set_function(self, function: Callable[[], float]) -> None:
        """Read the value from ``function()`` at scrape time instead."""
        self.function = function

    def get(self) -> float:
        return float(self.function()) if self.function is not None else self.value


class Gauge(_Metric[GaugeChild]):
    """A value that goes up and down. Across workers each live worker is shown apart (label
    ``pid``); sum them in PromQL."""

    kind = "gauge"

    def _new_child(self) -> GaugeChild:
        return GaugeChild()

    def set(self, value: float) -> None:
        self._only().set(value)

    def inc(self, amount: float = 1) -> None:
        self._only().inc(amount)

    def dec(self, amount: float = 1) -> None:
        self._only().dec(amount)

    def set_function(self, function: Callable[[], float]) -> None:
        self._only().set_function(function)

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for key, child in self.children():
            family.add_metric(list(key), child.get())
        yield family


class HistogramChild:
    """``counts[i]`` counts observations in bucket ``i`` (``counts[-1]`` is ``+Inf``), not
    cumulated; ``exemplars[i]`` is the latest exemplar of bucket ``i``."""

    __slots__ = ("bounds", "counts", "exemplars", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.exemplars: list[Exemplar | None] | None = None

    def observe(self, value: float, trace_id: str | None = None) -> None:
        index = bisect_left(self.bounds, value)
        self.counts[index] += 1
        self.sum += value
        if trace_id is not None:
            self.set_exemplar(index, value, trace_id)

    def set_exemplar(self, index: int, value: float, trace_id: str) -> None:
        if self.exemplars is None:
            self.exemplars = [None] * len(self.counts)
        self.exemplars[index] = Exemplar({"trace_id": trace_id}, value, time.time())


class Histogram(_Metric[HistogramChild]):
    """Observations counted in buckets, with their sum and count. ``observe(v, trace_id=...)``
    keeps an exemplar (shown in the OpenMetrics format) that links the bucket to a trace."""

    kind = "histogram"

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Iterable[str] = (),
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> None:
        self.bounds = histogram_buckets(buckets)
        labels = _check_labels(labelnames)
        if "le" in labels:
            raise MetricError("label name 'le' is reserved for histogram buckets")
        super().__init__(name, documentation, labels)

    def _new_child(self) -> HistogramChild:
        return HistogramChild(self.bounds)

    def observe(self, value: float, trace_id: str | None = None) -> None:
        self._only().observe(value, trace_id)

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for key, child in self.children():
            family.add_metric(
                list(key),
                cumulative_buckets(child.bounds, child.counts, child.exemplars),
                child.sum,
            )
        yield family


def cumulative_buckets(
    bounds: Sequence[float], counts: Sequence[int], exemplars: Sequence[Exemplar | None] | None
) -> list[tuple[str, float] | tuple[str, float, Exemplar]]:
    """The ``(le, cumulative count[, exemplar])`` triples HistogramMetricFamily takes."""
    out: list[tuple[str, float] | tuple[str, float, Exemplar]] = []
    running = 0
    for i, count in enumerate(counts):
        running += count
        le = format_bound(bounds[i]) if i < len(bounds) else "+Inf"
        exemplar = exemplars[i] if exemplars is not None else None
        if exemplar is not None:
            out.append((le, running, exemplar))
        else:
            out.append((le, running))
    return out


Instrument = Counter | Gauge | Histogram


class MetricsRegistry:
    """Holds instruments and extra collectors; a `prometheus_client` collector itself.

    ``registry.counter(...)`` / ``gauge`` / ``histogram`` declare (or return the same, when
    declared again with the same type and labels) an instrument. `add_collector` adds anything
    with a ``collect()`` yielding metric families (pool statistics, loop lag).
    """

    def __init__(self) -> None:
        self._instruments: dict[str, Instrument] = {}
        self._collectors: list[object] = []

    def _declare(self, metric: Instrument) -> Instrument:
        existing = self._instruments.get(metric.name)
        if existing is not None:
            if type(existing) is not type(metric) or existing.labelnames != metric.labelnames:
                raise MetricError(
                    f"metric {metric.name!r} is already declared as a {existing.kind} "
                    f"with labels {existing.labelnames!r}"
                )
            return existing
        self._instruments[metric.name] = metric
        return metric

    def counter(self, name: str, documentation: str, labelnames: Iterable[str] = ()) -> Counter:
        metric = self._declare(Counter(name, documentation, labelnames))
        return cast(Counter, metric)

    def gauge(self, name: str, documentation: str, labelnames: Iterable[str] = ()) -> Gauge:
        metric = self._declare(Gauge(name, documentation, labelnames))
        return cast(Gauge, metric)

    def histogram(
        self,
        name: str,
        documentation: str,
        labelnames: Iterable[str] = (),
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> Histogram:
        metric = self._declare(Histogram(name, documentation, labelnames, buckets))
        return cast(Histogram, metric)

    def add_collector(self, collector: object) -> None:
        if not callable(getattr(collector, "collect", None)):
            raise MetricError(f"{collector!r} has no collect() method")
        self._collectors.append(collector)

    def remove_collector(self, collector: object) -> None:
        if collector in self._collectors:
            self._collectors.remove(collector)

    def collect(self) -> Iterator[Metric]:
        for metric in list(self._instruments.values()):
            yield from metric.collect()
        for collector in list(self._collectors):
            yield from collector.collect()  # type: ignore[attr-defined]
