from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind, StatusCode

from flowcoro.observe import (
    Observe,
    ObserveError,
    RequestMetrics,
    TracingMiddleware,
    client_span,
    configure_tracing,
    extract_context,
    trace_log_fields,
)
from flowcoro.observe import tracing as tracing_module
from flowcoro.observe.testing import reset_global_tracer_provider

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"


class Request:
    def __init__(self, headers: dict[str, str], route: str | None = "/orders/{id}") -> None:
        self.method = "GET"
        self.path = "/orders/7"
        self.route: str | None = route
        self.headers = headers
        self.client = ("10.0.0.1", 5555)
        self.http_version = "1.1"


class Response:
    def __init__(self, status: int) -> None:
        self.status = status


async def test_server_span_with_remote_parent_child_span_and_exemplar(
    span_exporter: InMemorySpanExporter,
) -> None:
    metrics = RequestMetrics()
    middleware = TracingMiddleware(metrics)
    headers = {
        "traceparent": PARENT,
        "tracestate": "vendor=1",
        "user-agent": "curl/8",
        "host": "api.example:8080",
    }

    async def handler(request: Request) -> Response:
        assert trace_log_fields()["trace_id"] == TRACE_ID  # log records carry the trace
        with client_span("SELECT orders", {"db.system": "postgresql"}):
            await asyncio.sleep(0)
        # The context follows child tasks (scope() children) and thread offloads.
        child = asyncio.get_running_loop().create_task(asyncio.sleep(0, trace_log_fields()))
        assert (await child)["trace_id"] == TRACE_ID
        in_thread = await asyncio.to_thread(trace_log_fields)
        assert in_thread["trace_id"] == TRACE_ID
        return Response(200)

    response = await middleware(Request(headers), handler)
    assert response.status == 200
    assert trace_log_fields() == {}  # detached after the request
    spans = {s.name: s for s in span_exporter.get_finished_spans()}
    server = spans["GET /orders/{id}"]
    db = spans["SELECT orders"]
    assert server.kind is SpanKind.SERVER
    assert f"{server.context.trace_id:032x}" == TRACE_ID
    assert server.parent is not None
    assert server.parent.span_id == 0xB7AD6B7169203331
    assert (
        str(server.context.trace_state) == "vendor=1"
        or server.context.trace_state.get("vendor") == "1"
    )
    assert db.kind is SpanKind.CLIENT
    assert db.parent is not None
    assert db.parent.span_id == server.context.span_id
    attrs = dict(server.attributes or {})
    assert attrs["http.request.method"] == "GET"
    assert attrs["http.route"] == "/orders/{id}"
    assert attrs["url.path"] == "/orders/7"
    assert attrs["url.scheme"] == "http"
    assert attrs["http.response.status_code"] == 200
    assert attrs["client.address"] == "10.0.0.1"
    assert attrs["server.address"] == "api.example"
    assert attrs["user_agent.original"] == "curl/8"
    assert attrs["network.protocol.version"] == "1.1"
    exemplars = [
        e for e in metrics.exemplars(("/orders/{id}", "GET", "2xx")) or [] if e is not None
    ]
    assert [e.labels["trace_id"] for e in exemplars] == [TRACE_ID]


async def test_errors_late_routes_and_unsampled_requests(
    span_exporter: InMemorySpanExporter,
) -> None:
    metrics = RequestMetrics()
    middleware = TracingMiddleware(metrics)

    async def fails(request: Request) -> Response:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await middleware(Request({}), fails)

    async def server_error(request: Request) -> Response:
        request.route = "/late/{x}"  # routing ran inside call_next
        with pytest.raises(KeyError), client_span("GET redis"):
            raise KeyError("missing")
        return Response(503)

    await middleware(Request({}, route=None), server_error)

    class NoStatus:
        pass

    async def odd(request: Request) -> NoStatus:
        return NoStatus()

    await middleware(Request({"host": "[::1]:80"}, route=None), odd)
    spans = span_exporter.get_finished_spans()
    failed, redis, late, unnamed = spans[0], spans[1], spans[2], spans[3]
    assert failed.status.status_code is StatusCode.ERROR
    assert (failed.attributes or {})["error.type"] == "RuntimeError"
    assert failed.events[0].name == "exception"
    assert redis.status.status_code is StatusCode.ERROR
    assert (redis.attributes or {})["error.type"] == "KeyError"
    assert late.name == "GET /late/{x}"
    assert (late.attributes or {})["http.route"] == "/late/{x}"
    assert (late.attributes or {})["error.type"] == "503"
    assert late.status.status_code is StatusCode.ERROR
    assert unnamed.name == "GET"
    assert (unnamed.attributes or {})["server.address"] == "[::1]:80"

    # Head sampling off: nothing recorded, no exemplar.
    reset_global_tracer_provider()
    trace.set_tracer_provider(TracerProvider(sampler=ALWAYS_OFF))
    quiet = RequestMetrics()

    async def ok(request: Request) -> Response:
        return Response(200)

    await TracingMiddleware(quiet)(Request({}), ok)
    assert quiet._exemplars == {}
    with client_span("nothing") as span:
        assert not span.is_recording()


def test_extract_context_from_mappings_and_multi_valued_headers() -> None:
    class Multi:
        def __init__(self, values: dict[str, list[str]]) -> None:
            self.values = values

        def getlist(self, key: str) -> list[str]:
            return self.values.get(key, [])

        def keys(self) -> list[str]:
            return list(self.values)

    for carrier in (
        {"traceparent": PARENT},
        {"Traceparent": PARENT},
        Multi({"traceparent": [PARENT]}),
    ):
        span = trace.get_current_span(extract_context(carrier))
        assert f"{span.get_span_context().trace_id:032x}" == TRACE_ID, carrier
    assert not trace.get_current_span(extract_context(Multi({}))).get_span_context().is_valid
    assert tracing_module._GETTER.keys({"a": "1"}) == ["a"]


def test_configure_tracing_from_otel_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    reset_global_tracer_provider()
    try:
        monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
        assert configure_tracing() is None
        monkeypatch.delenv("OTEL_SDK_DISABLED")
        monkeypatch.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
        monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
        monkeypatch.setenv("OTEL_SERVICE_NAME", "orders")
        with pytest.raises(ObserveError, match="unknown exporter 'zipkin'"):
            configure_tracing("zipkin")
        reset_global_tracer_provider()
        provider = configure_tracing("console, none")
        assert isinstance(provider, TracerProvider)
        assert provider.resource.attributes["service.name"] == "orders"
        assert "0.25" in provider.sampler.get_description()
        assert configure_tracing() is provider  # already installed: kept
        provider.shutdown()
        reset_global_tracer_provider()
        monkeypatch.setitem(
            sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None
        )
        monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
        with pytest.raises(ObserveError, match="opentelemetry-exporter-otlp-proto-http"):
            configure_tracing()
        reset_global_tracer_provider()
        monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)
        assert not tracing_module.sdk_available()
        with pytest.raises(ObserveError, match="opentelemetry-sdk is not installed"):
            configure_tracing()
    finally:
        reset_global_tracer_provider()


def test_tracing_setting_modes(monkeypatch: pytest.MonkeyPatch) -> None:
    reset_global_tracer_provider()
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    assert Observe(tracing="on").tracing_enabled
    assert not Observe(tracing="off").tracing_enabled
    assert not Observe().tracing_enabled  # auto, nothing configured: off
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert not Observe().tracing_enabled
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    assert Observe().tracing_enabled


async def test_observe_component_configures_and_flushes_tracing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reset_global_tracer_provider()
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    observe = Observe(tracing="on")
    try:
        await observe.start(None)
        assert isinstance(observe.tracer_provider, TracerProvider)
        with client_span("work"):
            pass
    finally:
        await observe.stop()
        reset_global_tracer_provider()
    assert observe.tracer_provider is None


def _unused(*args: Any) -> None:
    pass


async def test_core_log_records_carry_trace_and_span_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    from flowcoro.core import logger

    reset_global_tracer_provider()
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    records: list[dict[str, Any]] = []
    logger.configure_logging(sinks=[logger.CallbackSink(records.append)])
    observe = Observe(tracing="on")
    await observe.start(None)
    try:
        log = logger.get_logger("test.observe")
        with client_span("work") as span:
            log.warning("inside")
            ids = span.get_span_context()
        log.warning("outside")
    finally:
        await observe.stop()
        assert logger.flush(5.0)
        logger.configure_logging(format="console")
        reset_global_tracer_provider()
    inside = next(r for r in records if r.get("event") == "inside")
    outside = next(r for r in records if r.get("event") == "outside")
    assert inside["trace_id"] == f"{ids.trace_id:032x}"
    assert inside["span_id"] == f"{ids.span_id:016x}"
    assert "trace_id" not in outside
