from __future__ import annotations

import gc

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families

from flowcoro.observe import RequestMetrics, render
from flowcoro.observe._pyrecorder import Recorder as PyRecorder
from flowcoro.observe.httpmetrics import IMPLEMENTATION

CRecorder: type[PyRecorder] | None
try:
    from flowcoro.observe._recorder import Recorder as _Compiled

    CRecorder = _Compiled  # type: ignore[assignment]
except ImportError:  # pragma: no cover - built without a compiler
    CRecorder = None


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


class State:
    """Stands for flowcoro-http's ServerState: ``active`` is the count in flight."""

    def __init__(self, active: int) -> None:
        self.active = active


IMPLEMENTATIONS = [PyRecorder] + ([CRecorder] if CRecorder is not None else [])


@pytest.fixture(params=IMPLEMENTATIONS, ids=lambda r: r.__module__.rsplit(".", 1)[-1])
def recorder(request: pytest.FixtureRequest) -> type[PyRecorder]:
    return request.param  # type: ignore[no-any-return]


def test_the_compiled_recorder_is_built_in_development() -> None:
    # ./tools/dev install builds it (a compiler is there); a wheel without one falls back.
    assert CRecorder is not None
    assert IMPLEMENTATION == "c"


def test_known_sequence_by_method_route_template_and_status_class(
    recorder: type[PyRecorder],
) -> None:
    m = RequestMetrics(recorder=recorder)
    servers = [State(1), State(2)]
    for state in servers:
        m.bind_server(state)
    del state
    for status, duration in ((200, 0.0004), (201, 0.003), (404, 0.001)):
        m.request_finished(Req(), "/users/{id:int}", status, duration)
    m.request_finished(Req("POST"), "/users/{id:int}", 500, 0.2)
    m.request_finished(Req(), None, 404, 0.0001)  # no route matched: never the raw path
    m.request_finished(Req("BREW"), "/pot", 418, 0.001)  # unknown method: collapsed
    m.request_finished(Req("BREW"), "/pot", 999, 0.001)  # out-of-range status: "other"
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
    assert got[("http_server_active_requests", ())] == 3  # the bound servers' in flight
    assert m.active == 3
    del servers[:]  # held weakly: a server gone is no longer counted
    gc.collect()
    assert m.active == 0


def test_exemplars_link_buckets_to_traces_in_openmetrics_only(recorder: type[PyRecorder]) -> None:
    m = RequestMetrics(recorder=recorder)
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


def test_cells_for_the_same_class_are_summed(recorder: type[PyRecorder]) -> None:
    m = RequestMetrics(buckets=[0.1], recorder=recorder)
    m.request_finished(Req(), "/a", 200, 0.05)
    m.request_finished(Req(), "/a", 204, 0.5)
    totals = m.totals()
    assert totals[("/a", "GET", "2xx")] == ([1, 1], pytest.approx(0.55))
