from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from flowcoro.observe import Counter, Gauge, Histogram, MetricError, MetricsRegistry, render
from flowcoro.observe.instruments import format_bound, histogram_buckets


def parse(
    registry: MetricsRegistry,
) -> dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    body, content_type = render(registry.collect)
    assert content_type.startswith("text/plain")
    out: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for family in text_string_to_metric_families(body.decode()):
        out[family.name] = {
            (s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples
        }
    return out


def test_counter_gauge_histogram_values_in_the_text_format() -> None:
    registry = MetricsRegistry()
    jobs = registry.counter("jobs_total", "Jobs done", ["kind"])
    jobs.labels("a").inc()
    jobs.labels("a").inc(2)
    jobs.labels(kind_value := "b").inc(0.5)
    depth = registry.gauge("queue_depth", "Items queued")
    depth.set(7)
    depth.inc(3)
    depth.dec()
    size = registry.gauge("cache_size", "Entries", ["cache"])
    size.labels("x").set_function(lambda: 42)
    latency = registry.histogram("work_seconds", "Work time", buckets=[0.1, 1.0])
    for v in (0.05, 0.1, 0.5, 3.0):
        latency.observe(v)
    plain = registry.counter("plain", "No labels")
    plain.inc()
    got = parse(registry)
    assert got["jobs"][("jobs_total", (("kind", "a"),))] == 3
    assert got["jobs"][("jobs_total", (("kind", kind_value),))] == 0.5
    assert got["queue_depth"][("queue_depth", ())] == 9
    assert got["cache_size"][("cache_size", (("cache", "x"),))] == 42
    assert got["work_seconds"][("work_seconds_bucket", (("le", "0.1"),))] == 2  # le is inclusive
    assert got["work_seconds"][("work_seconds_bucket", (("le", "1.0"),))] == 3
    assert got["work_seconds"][("work_seconds_bucket", (("le", "+Inf"),))] == 4
    assert got["work_seconds"][("work_seconds_count", ())] == 4
    assert got["work_seconds"][("work_seconds_sum", ())] == pytest.approx(3.65)
    assert got["plain"][("plain_total", ())] == 1


def test_declaring_again_returns_the_same_metric_and_conflicts_are_named() -> None:
    registry = MetricsRegistry()
    first = registry.counter("hits", "Hits", ["route"])
    assert registry.counter("hits", "Hits", ["route"]) is first
    with pytest.raises(MetricError, match="'hits' is already declared as a counter"):
        registry.gauge("hits", "Hits", ["route"])
    with pytest.raises(MetricError, match="already declared"):
        registry.counter("hits", "Hits", ["other"])
    assert registry.histogram("h", "H") is registry.histogram("h", "H")
    assert registry.gauge("g", "G") is registry.gauge("g", "G")


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Counter("bad name", "x"), "not a valid Prometheus name"),
        (lambda: Counter("ok", "x", ["bad-label"]), "not a valid Prometheus label"),
        (lambda: Counter("ok", "x", ["__reserved"]), "not a valid Prometheus label"),
        (lambda: Counter("ok", "x", ["a", "a"]), "repeat a name"),
        (lambda: Histogram("ok", "x", ["le"]), "reserved"),
        (lambda: Histogram("ok", "x", buckets=[]), "at least one"),
        (lambda: Histogram("ok", "x", buckets=[2, 1]), "strictly increasing"),
        (lambda: Histogram("ok", "x", buckets=[float("nan")]), "strictly increasing"),
    ],
)
def test_bad_declarations_raise_naming_the_problem(build: object, message: str) -> None:
    with pytest.raises(MetricError, match=message):
        build()  # type: ignore[operator]


def test_bad_use_raises() -> None:
    counter = Counter("c", "x", ["a"])
    with pytest.raises(MetricError, match="use labels"):
        counter.inc()
    with pytest.raises(MetricError, match="takes labels"):
        counter.labels("a", "b")
    with pytest.raises(MetricError, match="only goes up"):
        counter.labels("a").inc(-1)
    with pytest.raises(MetricError, match="no collect"):
        MetricsRegistry().add_collector(object())


def test_gauge_and_histogram_children_and_exemplars() -> None:
    gauge = Gauge("g", "x")
    gauge.set_function(lambda: 1.5)
    assert gauge.labels().get() == 1.5
    histogram = Histogram("h", "x", buckets=[1.0, float("inf")])
    assert histogram.bounds == (1.0,)
    histogram.observe(0.5, trace_id="abc")
    child = histogram.labels()
    assert child.exemplars is not None
    assert child.exemplars[0] is not None
    assert child.exemplars[0].labels == {"trace_id": "abc"}
    registry = MetricsRegistry()
    registry.add_collector(histogram)
    body, content_type = render(lambda: histogram_family(registry), "application/openmetrics-text")
    assert "openmetrics" in content_type
    assert b'# {trace_id="abc"} 0.5' in body
    registry.remove_collector(histogram)
    registry.remove_collector(histogram)  # absent: nothing happens
    assert list(registry.collect()) == []


def histogram_family(registry: MetricsRegistry) -> list[object]:
    return list(registry.collect())


def test_helpers() -> None:
    assert format_bound(float("inf")) == "+Inf"
    assert format_bound(1) == "1.0"
    assert histogram_buckets([1, 2]) == (1.0, 2.0)
