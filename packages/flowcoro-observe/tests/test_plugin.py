from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

import flowcoro.observe.plugin as plugin
from flowcoro.core import App, Plugins
from flowcoro.observe import (
    CONNECTIONS,
    QUERIES,
    ConnectionMetrics,
    HTTPTracing,
    MetricsServer,
    Observe,
)


def new_app(**settings: object) -> App:
    host = Plugins(autoload=False)
    host.register(plugin, name="observe", distribution="flowcoro-observe")
    return App("test", plugins=host, env={}, **settings)


def test_settings_are_declared_with_defaults() -> None:
    app = new_app()
    assert app.settings["metrics_path"] == "/metrics"
    assert app.settings["tracing"] == "auto"
    assert app.settings["metrics_dir"] == ""
    assert Observe.for_app(app) is Observe.for_app(app)


def test_http_hooks_hand_out_one_observer_with_the_tracer_only_when_enabled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    app = new_app(tracing="off")
    observe = Observe.for_app(app)
    assert plugin.flowcoro_http_observers(app) == [observe.http]
    assert observe.http.request_entered is None  # tracing off: no per-request hook at all
    assert plugin.flowcoro_net_connection_observers() == [CONNECTIONS]
    assert plugin.flowcoro_db_query_observers() == [QUERIES]
    traced = new_app(tracing="on")
    [observer] = plugin.flowcoro_http_observers(traced)
    # Metrics and tracing in one observer: the protocol keeps calling the recorder directly.
    assert observer is Observe.for_app(traced).http
    tracing = observer._tracing
    assert isinstance(tracing, HTTPTracing)
    assert observer.request_entered is tracing.request_entered
    assert tracing._metrics is observer
    quiet = new_app(http_metrics=False, tracing="on")
    [tracer] = plugin.flowcoro_http_observers(quiet)
    assert isinstance(tracer, HTTPTracing)
    assert tracer._metrics is None
    assert plugin.flowcoro_http_observers(new_app(http_metrics=False, tracing="off")) == []
    assert plugin.flowcoro_http_routes(new_app(metrics_port=9999)) == []


async def test_app_lifecycle_with_a_separate_metrics_port(
    unused_tcp_port: int, tmp_path: Path
) -> None:
    app = new_app(metrics_port=unused_tcp_port, metrics_dir=str(tmp_path), tracing="off")
    async with app:
        components = {c.name: c for c in app.components}
        assert isinstance(components["observe"], Observe)
        assert isinstance(components["observe-server"], MetricsServer)
        reader, writer = await asyncio.open_connection("127.0.0.1", unused_tcp_port)
        writer.write(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
        reply = (await reader.read()).decode()
        writer.close()
        await writer.wait_closed()
        assert reply.startswith("HTTP/1.1 200")
        assert "flowcoro_event_loop_lag_seconds" in reply
        await asyncio.sleep(1.1)  # at least one periodic flush
        assert (tmp_path / f"w-{Observe.for_app(app).store.pid}.json").exists()  # type: ignore[union-attr]
    assert (tmp_path / "retired.json").exists()  # a clean stop retires the worker's counts


async def test_flush_errors_are_logged_not_fatal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    observe = Observe(metrics_dir=str(tmp_path), metrics_flush_interval=0.05)
    assert observe.store is not None

    def broken(families: object) -> None:
        raise OSError("disk full")

    observe.store.write = broken  # type: ignore[method-assign]
    await observe.start(None)
    await asyncio.sleep(0.08)
    await observe.stop()  # the final snapshot fails too: logged, the stop completes
    assert "could not write the metrics snapshot" in caplog.text
    assert "could not hand this worker's metrics" in caplog.text


async def test_connection_metrics_through_a_real_net_server() -> None:
    net = pytest.importorskip("flowcoro.net.server")
    metrics = ConnectionMetrics()

    async def handler(conn: object) -> None:
        await asyncio.sleep(0.05)

    server = await net.start_server(handler, host="127.0.0.1", port=0, observers=[metrics])
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        await asyncio.sleep(0.01)
        from flowcoro.observe import render

        during = {
            s.name: s.value
            for f in text_string_to_metric_families(render(metrics.collect)[0].decode())
            for s in f.samples
        }
        writer.close()
        await writer.wait_closed()
    finally:
        await server.shutdown(1.0)
    assert during["flowcoro_net_connections_total"] == 1
    assert during["flowcoro_net_connections_active"] == 1
    families = {
        f.name: f for f in text_string_to_metric_families(render(metrics.collect)[0].decode())
    }
    active = [s.value for s in families["flowcoro_net_connections_active"].samples]
    assert active == [0]
