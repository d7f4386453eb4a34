from __future__ import annotations

from typing import NamedTuple

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client.parser import text_string_to_metric_families

from flowcoro.observe import QueryMetrics, client_span, render
from flowcoro.observe.testing import reset_global_tracer_provider
from flowcoro.observe.tracing import _UNSAMPLED


class Info(NamedTuple):
    system: str
    operation: str | None = None
    statement: str | None = None
    namespace: str | None = None
    server_address: str | None = None
    server_port: int | None = None
    pool_name: str | None = None


def test_query_spans_are_children_with_db_attributes(span_exporter: InMemorySpanExporter) -> None:
    queries = QueryMetrics()
    select = Info(
        "postgresql", "SELECT", "SELECT * FROM t WHERE id = $1", "test", "127.0.0.1", 5432, "db"
    )
    with client_span("GET /orders") as parent:
        token = queries.query_started(select)
        queries.query_finished(token, None)
        token = queries.query_started(Info("redis", "GET", pool_name="cache"))
        queries.query_finished(token, ConnectionResetError("gone"))
    spans = {s.name: s for s in span_exporter.get_finished_spans()}
    query = spans["SELECT test"]
    assert query.kind is SpanKind.CLIENT
    assert query.parent is not None
    assert query.parent.span_id == parent.get_span_context().span_id
    attrs = dict(query.attributes or {})
    assert attrs["db.system.name"] == "postgresql"
    assert attrs["db.query.text"] == "SELECT * FROM t WHERE id = $1"  # parametrized: no values
    assert attrs["server.port"] == 5432
    failed = spans["GET"]
    assert failed.status.status_code is StatusCode.ERROR
    assert (failed.attributes or {})["error.type"] == "ConnectionResetError"
    body, _ = render(queries.collect)
    got = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(body.decode())
        for s in f.samples
    }
    ok = (
        ("db_operation_name", "SELECT"),
        ("db_system_name", "postgresql"),
        ("error_type", ""),
        ("pool_name", "db"),
    )
    assert got[("db_client_operation_duration_seconds_count", ok)] == 1
    bad = (
        ("db_operation_name", "GET"),
        ("db_system_name", "redis"),
        ("error_type", "ConnectionResetError"),
        ("pool_name", "cache"),
    )
    assert got[("db_client_operation_duration_seconds_count", bad)] == 1


def test_no_span_without_tracing_or_in_a_dropped_request(
    span_exporter: InMemorySpanExporter,
) -> None:
    queries = QueryMetrics()
    token = _UNSAMPLED.set(True)
    try:
        started = queries.query_started(Info("sqlite"))
    finally:
        _UNSAMPLED.reset(token)
    assert started[1] is None
    queries.query_finished(started, None)
    reset_global_tracer_provider()  # API only: no provider, no spans
    assert queries.query_started(Info("sqlite", "SELECT"))[1] is None
    assert span_exporter.get_finished_spans() == ()
