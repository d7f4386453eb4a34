"""HTTP -> DB tracing end to end: a flowcoro-http app with flowcoro-observe's plugins, a route
running real SQL through `flowcoro.db.Database` (SQLite, and PostgreSQL when it is up). One
request yields a SERVER span and, as its child, a CLIENT span for the statement (its text without
the values), and ``/metrics`` shows the statement in ``db_client_operation_duration_seconds``."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("flowcoro.observe")
http = pytest.importorskip("flowcoro.http")

import httpx  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

import flowcoro.core.plugins as plugins_module  # noqa: E402
import flowcoro.db.plugin as db_plugin  # noqa: E402
import flowcoro.http.plugin as http_plugin  # noqa: E402
import flowcoro.observe.plugin as observe_plugin  # noqa: E402
from flowcoro.core.plugins import Plugins, set_plugins  # noqa: E402
from flowcoro.db import Database  # noqa: E402

SECRET = "s3cret-value"
TABLE = f"secrets_{uuid.uuid4().hex[:12]}"  # the PostgreSQL server is shared


@pytest.fixture
def host() -> Iterator[Plugins]:
    """The process-wide plugin host for the test: http, db and observe, nothing autoloaded."""
    previous = plugins_module._default
    plugins = Plugins(autoload=False)
    plugins.register(http_plugin, name="http", distribution="flowcoro-http")
    plugins.register(db_plugin, name="db", distribution="flowcoro-db")
    plugins.register(observe_plugin, name="observe", distribution="flowcoro-observe")
    set_plugins(plugins)
    try:
        yield plugins
    finally:
        set_plugins(previous)


@asynccontextmanager
async def serving(host: Plugins, db: Database) -> AsyncIterator[httpx.AsyncClient]:
    app = http.App("test", plugins=host, env={}, tracing="on")

    @app.get("/secret/{id:int}")
    async def secret(request: Any, id: int) -> Any:
        value = await db.fetchval(
            f"SELECT secret FROM {TABLE} WHERE id = ? AND secret = ?", id, SECRET
        )
        return http.JSONResponse({"secret": value})

    async with db:
        await db.execute(f"DROP TABLE IF EXISTS {TABLE}")
        await db.execute(f"CREATE TABLE {TABLE} (id integer, secret text)")
        await db.execute(f"INSERT INTO {TABLE} VALUES (?, ?)", 1, SECRET)
        server = await app.serve(port=0)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
                yield client
        finally:
            await server.shutdown(2.0)
            await app.stop()
            await db.execute(f"DROP TABLE IF EXISTS {TABLE}")


async def check(
    host: Plugins, span_exporter: InMemorySpanExporter, db: Database, system: str, query: str
) -> None:
    async with serving(host, db) as client:
        span_exporter.clear()
        response = await client.get("/secret/1")
        assert response.status_code == 200
        assert response.json() == {"secret": SECRET}
        spans = span_exporter.get_finished_spans()
        scrape = (await client.get("/metrics")).text
    server = next(s for s in spans if s.kind is SpanKind.SERVER)
    assert server.name == "GET /secret/{id:int}"
    clients = [s for s in spans if s.kind is SpanKind.CLIENT]
    assert len(clients) == 1
    span = clients[0]
    assert span.parent is not None
    assert span.parent.span_id == server.context.span_id
    assert span.context.trace_id == server.context.trace_id
    attributes = dict(span.attributes or {})
    assert attributes["db.system.name"] == system
    assert attributes["db.operation.name"] == "SELECT"
    assert attributes["db.query.text"] == query
    assert SECRET not in str(attributes)
    counts = {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(scrape)
        for s in family.samples
        if s.name == "db_client_operation_duration_seconds_count"
    }
    labels = {
        "db_system_name": system,
        "db_operation_name": "SELECT",
        "pool_name": f"db:{db.name}",
        "error_type": "",
    }
    assert counts[tuple(sorted(labels.items()))] >= 1


async def test_http_to_sqlite_trace_and_metrics(
    host: Plugins, span_exporter: InMemorySpanExporter, tmp_path: Path
) -> None:
    db = Database(f"sqlite:///{tmp_path}/observe.db", name=f"it{uuid.uuid4().hex[:6]}")
    await check(
        host, span_exporter, db, "sqlite", f"SELECT secret FROM {TABLE} WHERE id = ? AND secret = ?"
    )


async def test_http_to_postgres_trace_and_metrics(
    host: Plugins, span_exporter: InMemorySpanExporter, postgres_dsn: str
) -> None:
    db = Database(postgres_dsn, name=f"it{uuid.uuid4().hex[:6]}")
    await check(
        host,
        span_exporter,
        db,
        "postgresql",
        f"SELECT secret FROM {TABLE} WHERE id = $1 AND secret = $2",
    )
