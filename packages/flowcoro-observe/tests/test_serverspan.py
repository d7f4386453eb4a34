"""The kept request's server span without the SDK's start_span: the spans the exporters get are
the SDK's own, field for field, and the whole Span API works on it with the SDK's limits."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from flowcoro.observe import RequestMetrics, TracingMiddleware, client_span, configure_tracing
from flowcoro.observe._serverspan import ServerSpan, SpanStarter
from flowcoro.observe.testing import reset_global_tracer_provider

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


class Request:
    """Shaped like flowcoro-http's: parsed raw header pairs."""

    def __init__(self, raw: list[tuple[bytes, bytes]] | None = None, path: str = "/x") -> None:
        self.method = "GET"
        self.path = path
        self.route = "/x"
        self.client = ("10.0.0.1", 5555)
        self.http_version = "1.1"
        self._raw_headers = raw or [(b"host", b"api.example:8080"), (b"user-agent", b"t/1")]
        self.headers = {k.decode(): v.decode() for k, v in self._raw_headers}


class Response:
    def __init__(self, status: int = 200) -> None:
        self.status = status


class Starts(SpanProcessor):
    """Sees every span start, and adds an attribute there (as baggage processors do)."""

    def __init__(self) -> None:
        self.started: list[tuple[Any, Any]] = []

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        self.started.append((span, parent_context))
        span.set_attribute("app.tenant", "acme")

    def on_end(self, span: ReadableSpan) -> None:
        pass


@pytest.fixture
def provider(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, InMemorySpanExporter, Starts]]:
    """The provider flowcoro-observe configures (head sampler on, every request kept)."""
    reset_global_tracer_provider()
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_always_on")
    provider = configure_tracing("none")
    starts = Starts()
    memory = InMemorySpanExporter()
    provider.add_span_processor(starts)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    yield provider, memory, starts
    provider.shutdown()
    reset_global_tracer_provider()


async def busy(request: Request) -> Response:
    """A handler that uses the current (server) span the ways applications do."""
    span = trace.get_current_span()
    request.current = span  # type: ignore[attr-defined]
    span.set_attribute("app.user", 7)
    span.set_attributes({"app.flags": [True, False], "app.ratio": 0.5})
    span.add_event("cache.miss", {"key": "k"}, timestamp=123)
    span.add_link(SpanContext(int(TRACE_ID, 16), 0x1234, False, TraceFlags(1)), {"why": "batch"})
    span.add_link(trace.INVALID_SPAN_CONTEXT)  # nothing to link to: ignored
    with client_span("SELECT 1"):
        await asyncio.sleep(0)
    if request.path == "/fail":
        raise ValueError("bad input")
    return Response(503 if request.path == "/busy" else 200)


def _fields(span: ReadableSpan) -> dict[str, Any]:
    """What an exporter reads of a span, without its random ids and times."""
    return {
        "name": span.name,
        "kind": span.kind,
        "parent": None if span.parent is None else (span.parent.trace_id, span.parent.span_id),
        "flags": int(span.context.trace_flags),
        "state": dict(span.context.trace_state or {}),
        "remote_trace": span.parent is not None and span.context.trace_id == span.parent.trace_id,
        "attributes": dict(span.attributes or {}),
        "events": [
            (e.name, {k: v for k, v in (e.attributes or {}).items() if k != "exception.stacktrace"})
            for e in span.events
        ],
        "stack": [bool((e.attributes or {}).get("exception.stacktrace")) for e in span.events],
        "links": [(link.context.span_id, dict(link.attributes or {})) for link in span.links],
        "status": (span.status.status_code, span.status.description),
        "resource": dict(span.resource.attributes),
        "scope": (span.instrumentation_scope.name, span.instrumentation_scope.version),  # type: ignore[union-attr]
        "dropped": (span.dropped_attributes, span.dropped_events, span.dropped_links),
    }


async def _serve_all(middleware: TracingMiddleware) -> list[Request]:
    requests = [
        Request(),
        Request([(b"traceparent", PARENT.encode()), (b"tracestate", b"vendor=1")]),
        Request(path="/busy"),
        Request(path="/fail"),
    ]
    for request in requests:
        if request.path == "/fail":
            with pytest.raises(ValueError):
                await middleware(request, busy)
        else:
            await middleware(request, busy)
    return requests


async def test_the_exported_spans_are_the_sdks_field_for_field(
    provider: tuple[Any, InMemorySpanExporter, Starts],
) -> None:
    _, memory, starts = provider
    fast = TracingMiddleware(RequestMetrics())
    requests = await _serve_all(fast)
    assert all(type(r.current) is ServerSpan for r in requests)  # type: ignore[attr-defined]
    assert [type(span) for span, _ in starts.started if span.name.startswith("GET")] == [
        ServerSpan
    ] * 4
    ours = [s for s in memory.get_finished_spans() if s.kind is SpanKind.SERVER]
    # Client spans inside are children of the fast path's server spans.
    clients = [s for s in memory.get_finished_spans() if s.kind is SpanKind.CLIENT]
    assert sorted(c.parent.span_id for c in clients) == sorted(  # type: ignore[union-attr]
        s.context.span_id for s in ours
    )
    memory.clear()

    sdk = TracingMiddleware(RequestMetrics())
    sdk._head_sampler()
    sdk._starter = None  # the same tracer, its spans from start_span
    requests = await _serve_all(sdk)
    assert not any(type(r.current) is ServerSpan for r in requests)  # type: ignore[attr-defined]
    theirs = [s for s in memory.get_finished_spans() if s.kind is SpanKind.SERVER]

    assert len(ours) == len(theirs) == 4
    for mine, sdks in zip(ours, theirs, strict=True):
        assert _fields(mine) == _fields(sdks)
        assert type(mine) is ReadableSpan
    root, child, busy_span, failed = ours
    assert root.parent is None
    assert child.parent is not None
    assert f"{child.context.trace_id:032x}" == TRACE_ID
    assert dict(child.context.trace_state or {}) == {"vendor": "1"}
    assert root.attributes["app.tenant"] == "acme"  # type: ignore[index] # set in on_start
    assert busy_span.status.status_code is StatusCode.ERROR
    assert failed.events[-1].name == "exception"
    assert failed.attributes["error.type"] == "ValueError"  # type: ignore[index]


async def test_limits_and_the_span_api_after_end(
    provider: tuple[Any, InMemorySpanExporter, Starts],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The SDK's limits (here from the OTEL_* variables) bound what is added later, and cut the
    tracer's own values; after end nothing changes and the span is exported once."""
    from opentelemetry.sdk.trace import SpanLimits

    _, memory, _ = provider
    monkeypatch.setenv("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "4")
    monkeypatch.setenv("OTEL_SPAN_EVENT_COUNT_LIMIT", "2")
    monkeypatch.setenv("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "16")
    tracer = trace.get_tracer_provider().get_tracer("limits")
    tracer._span_limits = SpanLimits()  # type: ignore[attr-defined] # read from the variables
    starter = SpanStarter.for_tracer(tracer)
    assert starter is not None
    span = starter.start("GET /x", None, {"url.path": "/orders/7", "http.route": "/x"}, True)
    assert span is not None
    assert span.is_recording()
    assert span.attributes["url.path"] == "/ord"  # the length limit cuts the tracer's own too
    span.set_attribute("app.bad", object())  # type: ignore[arg-type] # not a value
    for i in range(15):
        span.set_attribute(f"app.n{i}", i)
    for i in range(3):
        span.add_event(f"e{i}")
    span.update_name("GET /y")
    span.set_status(StatusCode.ERROR, "first")  # a code and its description
    assert span._status.description == "first"
    span.set_status(Status(StatusCode.OK))
    span.set_status(StatusCode.ERROR, "too late")  # OK is final
    with caplog.at_level(logging.WARNING):
        span.end()
        span.end()
        span.set_attribute("app.late", 1)
        span.update_name("renamed")
        span.add_event("late")
        span.add_link(SpanContext(int(TRACE_ID, 16), 0x1234, False, TraceFlags(1)))
    assert not span.is_recording()
    (done,) = memory.get_finished_spans()
    attributes = dict(done.attributes or {})
    assert attributes.get("app.bad") is None  # cleaned away (as the SDK's span does)
    assert "app.late" not in attributes
    # 2 + 1 (on_start) + 1 + 15: the oldest three go, as the SDK's bounded attributes do it.
    assert len(attributes) == 16
    assert done.dropped_attributes == 3
    assert not {"url.path", "http.route", "app.tenant"} & set(attributes)
    assert [e.name for e in done.events] == ["e1", "e2"]
    assert done.dropped_events == 1
    assert done.status.status_code is StatusCode.OK
    assert done.name == "GET /y"
    assert sum("ended span" in r.getMessage() for r in caplog.records) == 5
    assert not done.links


async def test_the_sdk_starts_spans_where_the_fast_path_would_differ(
    provider: tuple[Any, InMemorySpanExporter, Starts], monkeypatch: pytest.MonkeyPatch
) -> None:
    tracer = trace.get_tracer_provider().get_tracer("x")
    assert SpanStarter.for_tracer(tracer) is not None
    assert SpanStarter.for_tracer(trace.NoOpTracer()) is None

    class Lookalike:  # the public attributes of an SDK tracer, not its limits and scope
        id_generator = span_processor = resource = None

    assert SpanStarter.for_tracer(Lookalike()) is None
    monkeypatch.setenv("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "true")
    assert SpanStarter.for_tracer(tracer) is None  # the SDK counts the spans it starts
    monkeypatch.delenv("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED")

    # A tracer turned off at run time (here: as the starter sees it): start_span decides.
    _, memory, _ = provider
    middleware = TracingMiddleware()
    middleware._head_sampler()
    middleware._starter._is_enabled = lambda: False
    request = Request()
    await middleware(request, busy)
    assert type(request.current) is not ServerSpan  # type: ignore[attr-defined]
    # A parent header that does not parse: no remote span to follow, the SDK decides.
    starter = middleware._starter
    starter._is_enabled = None
    from opentelemetry.context import Context

    assert starter.start("GET /x", Context(), {}, False) is None
    assert starter.start("GET /x", None, {}, False) is None
    garbled = Request([(b"traceparent", b"00-" + b"z" * 32 + b"-00f067aa0ba902b7-01")])
    await middleware(garbled, busy)
    assert type(garbled.current) is not ServerSpan  # type: ignore[attr-defined]
    # Both went through start_span (whose always-on sampler then kept them).
    assert [s.name for s in memory.get_finished_spans() if s.kind is SpanKind.SERVER] == [
        "GET /x",
        "GET /x",
    ]


def test_record_exception_and_status_descriptions(
    provider: tuple[Any, InMemorySpanExporter, Starts], caplog: pytest.LogCaptureFixture
) -> None:
    _, memory, _ = provider
    starter = SpanStarter.for_tracer(trace.get_tracer_provider().get_tracer("x"))
    assert starter is not None
    span = starter.start("GET /x", None, {}, True)
    assert span is not None
    assert span.name == "GET /x"
    assert span.kind is SpanKind.SERVER
    assert span.parent is None
    assert span.start_time > 0
    assert "GET /x" in repr(span)

    class Custom(Exception):
        pass

    try:
        raise Custom("broken")
    except Custom as exc:
        span.record_exception(exc, {"extra": 1}, escaped=True)
    with caplog.at_level(logging.WARNING):
        span.set_status(Status(StatusCode.ERROR, "kept"), "ignored")
    assert any("description" in r.getMessage() for r in caplog.records)
    assert [e.name for e in span.events] == ["exception"]
    assert span.attributes == {"app.tenant": "acme"}  # from the processor's on_start
    span.end(end_time=span.start_time + 5)
    (done,) = memory.get_finished_spans()
    event = done.events[0]
    assert event.attributes["exception.type"] == f"{__name__}.{Custom.__qualname__}"  # type: ignore[index]
    assert event.attributes["exception.message"] == "broken"  # type: ignore[index]
    assert event.attributes["exception.escaped"] == "True"  # type: ignore[index]
    assert event.attributes["extra"] == 1  # type: ignore[index]
    assert "Custom: broken" in event.attributes["exception.stacktrace"]  # type: ignore[index,operator]
    assert done.status.description == "kept"
    assert done.end_time == done.start_time + 5  # type: ignore[operator]
    link = Link(trace.INVALID_SPAN_CONTEXT, {"a": 1})
    assert link.attributes  # a link with attributes is kept even without a valid context


async def test_exporters_encode_the_span(
    provider: tuple[Any, InMemorySpanExporter, Starts],
) -> None:
    """What the OTLP exporter sends and what the console exporter prints, from a fast-path
    span with everything a handler can add."""
    import json

    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    _, memory, _ = provider
    request = Request([(b"traceparent", PARENT.encode()), (b"tracestate", b"vendor=1")])
    with pytest.raises(ValueError):
        await TracingMiddleware()(Request(path="/fail"), busy)
    await TracingMiddleware()(request, busy)
    assert type(request.current) is ServerSpan  # type: ignore[attr-defined]
    failed, child = (s for s in memory.get_finished_spans() if s.kind is SpanKind.SERVER)
    message = encode_spans([failed, child])
    (scope,) = message.resource_spans[0].scope_spans
    first, second = scope.spans
    assert first.name == second.name == "GET /x"
    assert first.status.code == 2  # ERROR
    assert [e.name for e in first.events] == ["cache.miss", "exception"]
    assert len(first.links) == 1
    assert second.parent_span_id == bytes.fromhex("00f067aa0ba902b7")
    assert second.trace_state == "vendor=1"
    assert {a.key for a in second.attributes} >= {"http.route", "app.user", "app.tenant"}
    printed = json.loads(child.to_json())
    assert printed["kind"] == "SpanKind.SERVER"
    assert printed["attributes"]["app.flags"] == [True, False]
