from __future__ import annotations

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families

from flowcoro.observe import RequestMetrics, render


class Req:
    def __init__(self, method: str = "GET") -> None:
        self.method = method


def samples(metrics: RequestMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, _ = render(metrics.collect)
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(body.decode())
        for s in f.samples
    }


def key(
    sample: str, method: str, route: str, klass: str, **extra: str
) -> tuple[str, tuple[tuple[str, str], ...]]:
    labels = {
        "http_request_method": method,
        "http_route": route,
        "http_response_status_class": klass,
    }
    labels.update(extra)
    return sample, tuple(sorted(labels.items()))


def test_known_sequence_by_method_route_template_and_status_class() -> None:
    m = RequestMetrics()
    for status, duration in ((200, 0.0004), (201, 0.003), (404, 0.001)):
        m.request_started(Req())
        m.request_finished(Req(), "/users/{id:int}", status, duration)
    m.request_started(Req("POST"))
    m.request_finished(Req("POST"), "/users/{id:int}", 500, 0.2)
    m.request_started(Req())
    m.request_finished(Req(), None, 404, 0.0001)  # no route matched: never the raw path
    m.request_started(Req("BREW"))
    m.request_finished(Req("BREW"), "/pot", 418, 0.001)  # unknown method: collapsed
    m.request_started(Req("BREW"))
    m.request_finished(Req("BREW"), "/pot", 999, 0.001)  # out-of-range status: "other"
    m.request_started(Req())  # still in flight
    got = samples(m)
    route = "/users/{id:int}"
    assert got[key("http_server_request_duration_seconds_count", "GET", route, "2xx")] == 2
    assert got[
        key("http_server_request_duration_seconds_sum", "GET", route, "2xx")
    ] == pytest.approx(0.0034)
    assert (
        got[key("http_server_request_duration_seconds_bucket", "GET", route, "2xx", le="0.0005")]
        == 1
    )
    assert (
        got[key("http_server_request_duration_seconds_bucket", "GET", route, "2xx", le="0.005")]
        == 2
    )
    assert got[key("http_server_request_duration_seconds_count", "GET", route, "4xx")] == 1
    assert got[key("http_server_request_duration_seconds_count", "POST", route, "5xx")] == 1
    assert got[key("http_server_request_duration_seconds_count", "GET", "unmatched", "4xx")] == 1
    assert got[key("http_server_request_duration_seconds_count", "_OTHER", "/pot", "4xx")] == 1
    assert got[key("http_server_request_duration_seconds_count", "_OTHER", "/pot", "other")] == 1
    assert got[("http_server_active_requests", ())] == 1
    assert m.started == 8


def test_exemplars_link_buckets_to_traces_in_openmetrics_only() -> None:
    m = RequestMetrics()
    m.request_started(Req())
    m.request_finished(Req(), "/json", 200, 0.0003)
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    m.record_exemplar("/json", "GET", 200, 0.0003, trace_id)
    m.record_exemplar(None, "BREW", 200, 0.0003, trace_id)  # a key with no counts yet
    body, content_type = render(m.collect, "application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    families = {f.name: f for f in parse_openmetrics(body.decode())}
    exemplars = [
        s.exemplar for s in families["http_server_request_duration_seconds"].samples if s.exemplar
    ]
    assert [e.labels["trace_id"] for e in exemplars] == [trace_id]
    assert exemplars[0].value == 0.0003
    text, _ = render(m.collect)
    assert trace_id.encode() not in text


def test_cells_for_the_same_class_are_summed() -> None:
    m = RequestMetrics(buckets=[0.1])
    m.request_finished(Req(), "/a", 200, 0.05)
    m.request_finished(Req(), "/a", 204, 0.5)
    totals = m.totals()
    assert totals[("/a", "GET", "2xx")] == ([1, 1], pytest.approx(0.55))
