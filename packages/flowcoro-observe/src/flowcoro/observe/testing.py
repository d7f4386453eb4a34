"""Pytest fixtures shipped by flowcoro-observe (registered through the ``pytest11`` entry point).

``span_exporter``: an OpenTelemetry SDK tracer provider with an in-memory exporter, installed as
the global provider for one test and removed after it. It is built as `configure_tracing`
builds one (its id generator lets the head sampler decide before the SDK), so requests are
traced the way they are in production. OpenTelemetry lets a process set its global provider
once, so the fixture resets that guard around each test. The test is skipped when the SDK (the
``otlp`` extra) is not installed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

__all__ = ["reset_global_tracer_provider", "span_exporter"]


def reset_global_tracer_provider() -> None:
    """Forget the global tracer provider (private OpenTelemetry state: for tests only)."""
    from opentelemetry import trace
    from opentelemetry.util._once import Once

    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None


@pytest.fixture
def span_exporter() -> Iterator[Any]:
    """The in-memory exporter receiving every span the test ends."""
    sdk = pytest.importorskip("opentelemetry.sdk.trace", reason="opentelemetry-sdk is missing")
    from opentelemetry import trace
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from flowcoro.observe._sampling import PresetIdGenerator

    reset_global_tracer_provider()
    memory = InMemorySpanExporter()
    provider = sdk.TracerProvider(id_generator=PresetIdGenerator())
    provider.add_span_processor(SimpleSpanProcessor(memory))
    trace.set_tracer_provider(provider)
    yield memory
    provider.shutdown()
    reset_global_tracer_provider()
