"""Observe plugged into a real flowcoro-http app through its hooks, scraped over real sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families

import flowcoro.observe.plugin as observe_plugin
from flowcoro.core import Plugins
from flowcoro.observe import client_span

http = pytest.importorskip("flowcoro.http")
http_plugin = pytest.importorskip("flowcoro.http.plugin")

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def build(**settings: Any) -> Any:
    host = Plugins(autoload=False)
    host.register(http_plugin, name="http", distribution="flowcoro-http")
    host.register(observe_plugin, name="observe", distribution="flowcoro-observe")
    app = http.App("test", plugins=host, env={}, **settings)

    @app.get("/json")
    async def hello(request: Any) -> Any:
        return http.JSONResponse({"message": "Hello, World!"})

    @app.get("/users/{id:int}")
    async def user(request: Any, id: int) -> Any:
        with client_span("SELECT users", {"db.system.name": "postgresql"}):
            await asyncio.sleep(0)
        return http.JSONResponse({"id": id})

    @app.post("/boom")
    async def boom(request: Any) -> Any:
        raise RuntimeError("boom")

    return app


@asynccontextmanager
async def serving(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    server = await app.serve(port=0)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            yield client
    finally:
        await server.shutdown(2.0)
        await app.stop()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


def count(got: dict[Any, float], method: str, route: str, klass: str) -> float:
    labels = {
        "http_request_method": method,
        "http_route": route,
        "http_response_status_class": klass,
    }
    return got.get(("http_server_request_duration_seconds_count", tuple(sorted(labels.items()))), 0)


async def test_request_metrics_after_a_known_sequence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    app = build(tracing="off")
    async with serving(app) as client:
        for _ in range(3):
            assert (await client.get("/json")).status_code == 200
        for uid in (1, 2):
            assert (await client.get(f"/users/{uid}")).status_code == 200
        assert (await client.get("/nowhere/at/all")).status_code == 404
        assert (await client.post("/boom")).status_code == 500
        response = await client.get("/metrics")
        assert response.status_code == 200
        got = samples(response.text)
        assert count(got, "GET", "/json", "2xx") == 3
        assert count(got, "GET", "/users/{id:int}", "2xx") == 2  # the template, not /users/1
        assert count(got, "GET", "unmatched", "4xx") == 1
        assert count(got, "POST", "/boom", "5xx") == 1
        assert not any("/users/1" in str(k) for k in got)
        assert got[("http_server_active_requests", ())] == 1  # the scrape itself
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        ready = await client.get("/readyz")
        assert ready.status_code == 200
        app.begin_shutdown()
        assert (await client.get("/readyz")).status_code == 503
        # The earlier scrape of /metrics is counted by this one (which is still in flight).
        again = samples((await client.get("/metrics")).text)
        assert count(again, "GET", "/metrics", "2xx") == 1
        assert count(again, "GET", "/readyz", "2xx") == 1
        assert count(again, "GET", "/readyz", "5xx") == 1


async def test_traces_and_exemplars_over_http(span_exporter: InMemorySpanExporter) -> None:
    app = build(tracing="on")
    async with serving(app) as client:
        headers = {"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"}
        assert (await client.get("/users/7", headers=headers)).status_code == 200
        assert (await client.post("/boom")).status_code == 500
        response = await client.get("/metrics", headers={"accept": "application/openmetrics-text"})
        assert response.headers["content-type"].startswith("application/openmetrics-text")
        families = {f.name: f for f in parse_openmetrics(response.text)}
    spans = {s.name: s for s in span_exporter.get_finished_spans()}
    server = spans["GET /users/{id:int}"]
    db = spans["SELECT users"]
    assert server.kind is SpanKind.SERVER
    assert f"{server.context.trace_id:032x}" == TRACE_ID
    assert db.parent is not None
    assert db.parent.span_id == server.context.span_id
    assert (server.attributes or {})["http.route"] == "/users/{id:int}"
    assert (server.attributes or {})["http.response.status_code"] == 200
    boom = spans["POST /boom"]
    assert (boom.attributes or {})["http.response.status_code"] == 500
    # The span tells what failed, though the handler's exception became the 500 before it.
    assert (boom.attributes or {})["error.type"] == "RuntimeError"
    assert [e.name for e in boom.events] == ["exception"]
    exemplars = {
        s.labels["http_route"]: s.exemplar.labels["trace_id"]
        for s in families["http_server_request_duration_seconds"].samples
        if s.exemplar is not None
    }
    assert exemplars["/users/{id:int}"] == TRACE_ID
    assert "/boom" in exemplars


async def test_metrics_on_their_own_port_are_not_app_routes(unused_tcp_port: int) -> None:
    app = build(tracing="off", metrics_port=unused_tcp_port)
    async with serving(app) as client:
        assert (await client.get("/metrics")).status_code == 404
        assert (await client.get("/healthz")).status_code == 404  # all three moved
        async with httpx.AsyncClient() as other:
            response = await other.get(f"http://127.0.0.1:{unused_tcp_port}/metrics")
        assert response.status_code == 200
        assert "http_server_request_duration_seconds" in response.text


async def test_metrics_disabled_keeps_health_routes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    app = build(tracing="off", metrics_enabled=False)
    async with serving(app) as client:
        assert (await client.get("/metrics")).status_code == 404
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 200


async def test_head_sampling_over_http_drops_whole_requests_and_keeps_parented_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Through flowcoro-http's ``request_entered`` hook: at ratio 0 a request without a parent
    leaves no span at all (nor do the client spans inside it), a sampled W3C parent is
    followed, an unsampled one is not, and a 404 the handler raised is no server error."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from flowcoro.observe import configure_tracing
    from flowcoro.observe.testing import reset_global_tracer_provider

    reset_global_tracer_provider()
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0")
    provider = configure_tracing("none")
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    app = build(tracing="on")

    @app.get("/missing")
    async def missing(request: Any) -> Any:
        raise http.HTTPException(404, "no such user")

    sampled = {"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"}
    try:
        async with serving(app) as client:
            for _ in range(20):
                assert (await client.get("/users/1")).status_code == 200
            unsampled = {"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-00"}
            assert (await client.get("/users/2", headers=unsampled)).status_code == 200
            assert memory.get_finished_spans() == ()
            assert (await client.get("/users/3", headers=sampled)).status_code == 200
            assert (await client.get("/missing", headers=sampled)).status_code == 404
        spans = {s.name: s for s in memory.get_finished_spans()}
        assert sorted(spans) == ["GET /missing", "GET /users/{id:int}", "SELECT users"]
        assert spans["SELECT users"].parent.span_id == spans["GET /users/{id:int}"].context.span_id  # type: ignore[union-attr]
        missing_span = spans["GET /missing"]
        assert (missing_span.attributes or {})["http.response.status_code"] == 404
        assert "error.type" not in (missing_span.attributes or {})
        assert missing_span.status.is_unset
    finally:
        provider.shutdown()
        reset_global_tracer_provider()
