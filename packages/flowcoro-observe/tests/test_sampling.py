"""Head sampling before SDK work: the configured rate is honoured, dropped requests are cheap."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    TraceIdRatioBased,
)

import flowcoro.observe.plugin as plugin
from flowcoro.observe import RequestMetrics, TracingMiddleware, client_span, configure_tracing
from flowcoro.observe._sampling import HeadSampler, PresetIdGenerator
from flowcoro.observe.multiprocess import ENV_DIR
from flowcoro.observe.testing import reset_global_tracer_provider
from flowcoro.observe.tracing import trace_log_fields


def configured(
    monkeypatch: pytest.MonkeyPatch, sampler: str, arg: str | None = None
) -> tuple[Any, InMemorySpanExporter]:
    reset_global_tracer_provider()
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", sampler)
    if arg is not None:
        monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", arg)
    provider = configure_tracing("none")
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return provider, memory


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    yield
    reset_global_tracer_provider()


class Request:
    """Shaped like flowcoro-http's: parsed raw header pairs."""

    def __init__(self, raw: list[tuple[bytes, bytes]] | None = None) -> None:
        self.method = "GET"
        self.path = "/x"
        self.route = "/x"
        self._raw_headers = raw or []
        self.headers = {k.decode(): v.decode() for k, v in self._raw_headers}


class Response:
    status = 200


async def handler(request: Request) -> Response:
    with client_span("SELECT 1") as span:
        request.child_recording = span.is_recording()  # type: ignore[attr-defined]
        request.logged = trace_log_fields()  # type: ignore[attr-defined]
    return Response()


async def test_always_off_drops_everything_without_creating_spans(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    provider, memory = configured(monkeypatch, "parentbased_always_off")
    metrics = RequestMetrics()
    middleware = TracingMiddleware(metrics)
    request = Request()
    await middleware(request, handler)
    assert request.child_recording is False  # type: ignore[attr-defined]
    assert request.logged == {}  # type: ignore[attr-defined]
    assert memory.get_finished_spans() == ()
    assert metrics._exemplars == {}
    provider.shutdown()


async def test_always_on_samples_with_the_preset_trace_id(monkeypatch: pytest.MonkeyPatch) -> None:
    provider, memory = configured(monkeypatch, "parentbased_always_on")
    middleware = TracingMiddleware(RequestMetrics())
    request = Request()
    await middleware(request, handler)
    spans = memory.get_finished_spans()
    assert [s.name for s in spans] == ["SELECT 1", "GET /x"]
    assert spans[0].context.trace_id == spans[1].context.trace_id
    assert request.logged["trace_id"] == f"{spans[1].context.trace_id:032x}"  # type: ignore[attr-defined]
    provider.shutdown()


async def test_remote_parent_flags_decide_under_parent_based(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    provider, memory = configured(monkeypatch, "parentbased_traceidratio", "0")
    middleware = TracingMiddleware()
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    unsampled = Request([(b"traceparent", f"00-{trace_id}-00f067aa0ba902b7-00".encode())])
    await middleware(unsampled, handler)
    assert memory.get_finished_spans() == ()
    sampled = Request(
        [(b"host", b"h"), (b"traceparent", f"00-{trace_id}-00f067aa0ba902b7-01".encode())]
    )
    await middleware(sampled, handler)
    spans = memory.get_finished_spans()
    assert {f"{s.context.trace_id:032x}" for s in spans} == {trace_id}  # the parent's choice wins
    assert len(spans) == 2
    provider.shutdown()


async def test_the_ratio_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    provider, memory = configured(monkeypatch, "traceidratio", "0.25")
    middleware = TracingMiddleware()

    async def bare(request: Request) -> Response:
        return Response()

    for _ in range(800):
        await middleware(Request(), bare)
    kept = len(memory.get_finished_spans())
    assert 120 < kept < 280, kept  # 200 expected; the SDK agrees with every decision we made
    provider.shutdown()


def test_only_reproducible_samplers_get_the_fast_path() -> None:
    ids = PresetIdGenerator()

    class Provider:
        def __init__(self, sampler: object, id_generator: object = ids) -> None:
            self.sampler = sampler
            self.id_generator = id_generator

    assert HeadSampler.for_provider(Provider(ALWAYS_ON)).bound == 2**64  # type: ignore[union-attr]
    assert HeadSampler.for_provider(Provider(ALWAYS_OFF)).bound == 0  # type: ignore[union-attr]
    ratio = HeadSampler.for_provider(Provider(ParentBased(TraceIdRatioBased(0.5))))
    assert ratio is not None
    assert ratio.parent_based
    assert HeadSampler.for_provider(Provider(ALWAYS_ON, id_generator=None)) is None
    assert (
        HeadSampler.for_provider(
            Provider(ParentBased(ALWAYS_ON, remote_parent_not_sampled=ALWAYS_ON))
        )
        is None
    )
    assert HeadSampler.for_provider(Provider(object())) is None
    assert HeadSampler.for_provider(TracerProvider()) is None  # the SDK's own id generator
    ids.preset(42)
    assert ids.generate_trace_id() == 42
    assert ids.generate_trace_id() != 42


def test_workers_starting_hook_prepares_the_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv(ENV_DIR, str(tmp_path))
    (tmp_path / "w-9.json").write_text("{}")
    plugin.flowcoro_net_workers_starting(workers=1)  # one process: nothing to share
    assert (tmp_path / "w-9.json").exists()
    plugin.flowcoro_net_workers_starting(workers=2)
    assert not (tmp_path / "w-9.json").exists()


def test_root_decisions_follow_the_ratio_and_the_sdk_rule() -> None:
    ids = PresetIdGenerator()
    bound = 2**62  # p = 0.25
    head = HeadSampler(bound, False, ids)

    def decide(head: HeadSampler, requests: int) -> Iterator[bool]:
        """Each request's decision as the tracer's countdown makes it from the gaps (one at a
        time: a kept request's trace id is read before the next is preset)."""
        remaining = head.gap()
        for _ in range(requests):
            if remaining > 1:
                remaining -= 1
                yield False
            else:
                remaining = head.keep()
                yield True

    kept = 0
    quarters = [0, 0, 0, 0]
    for keep in decide(head, 8000):
        if keep:
            kept += 1
            trace_id = ids.generate_trace_id()
            assert trace_id & (2**64 - 1) < bound  # the SDK's ratio sampler agrees
            quarters[(trace_id & (2**64 - 1)) * 4 // bound] += 1
    assert 1700 < kept < 2300, kept  # 2000 expected
    # The kept ids' low bits are uniform below the bound (as the SDK's kept ids are).
    assert all(abs(q - kept / 4) < 0.2 * kept / 4 for q in quarters), quarters
    assert HeadSampler(0, False, ids).gap() > 10**15  # always off: never reached
    always = HeadSampler(2**64, False, ids)
    assert all(decide(always, 10))


async def test_another_propagator_makes_the_sdk_decide_every_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only W3C parents are read before the SDK: with another propagator (here one reading
    ``x-parent``) a parent it carries is followed even at ratio 0, and headers are extracted."""
    from opentelemetry import propagate
    from opentelemetry.context import Context
    from opentelemetry.propagators.textmap import TextMapPropagator
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context

    class XParent(TextMapPropagator):
        def extract(self, carrier: Any, context: Context | None = None, getter: Any = None) -> Any:
            value = (getter.get(carrier, "x-parent") or [None])[0] if getter else None
            if value is None:
                return context if context is not None else Context()
            parent = SpanContext(int(value, 16), 0xF067AA0BA902B7, True, TraceFlags(1))
            return set_span_in_context(NonRecordingSpan(parent), context)

        def inject(self, carrier: Any, context: Context | None = None, setter: Any = None) -> None:
            pass

        @property
        def fields(self) -> set[str]:
            return {"x-parent"}

    provider, memory = configured(monkeypatch, "parentbased_traceidratio", "0")
    previous = propagate.get_global_textmap()
    propagate.set_global_textmap(XParent())
    try:
        middleware = TracingMiddleware()
        trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
        await middleware(Request([(b"x-parent", trace_id.encode())]), handler)
        await middleware(Request(), handler)  # a root: ratio 0 drops it (the SDK's decision)
    finally:
        propagate.set_global_textmap(previous)
    spans = memory.get_finished_spans()
    assert [s.name for s in spans] == ["SELECT 1", "GET /x"]
    assert {f"{s.context.trace_id:032x}" for s in spans} == {trace_id}
    assert middleware._head is None  # no fast path under another propagator
    provider.shutdown()
