"""WebSocket metrics: observe plugged into a real flowcoro-http app, a real `websockets`
client over real sockets, /metrics scraped and read with prometheus_client's parser."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import flowcoro.observe.plugin as observe_plugin
from flowcoro.core import Plugins
from flowcoro.observe import WebSocketMetrics, render
from flowcoro.observe.multiprocess import ENV_DIR

http = pytest.importorskip("flowcoro.http")
http_plugin = pytest.importorskip("flowcoro.http.plugin")
websockets_client = pytest.importorskip("websockets.asyncio.client")

ROUTE = "/chat/{room}"


def build(**settings: Any) -> Any:
    host = Plugins(autoload=False)
    host.register(http_plugin, name="http", distribution="flowcoro-http")
    host.register(observe_plugin, name="observe", distribution="flowcoro-observe")
    app = http.App("ws", plugins=host, env={}, tracing="off", **settings)

    @app.websocket("/chat/{room}")
    async def chat(ws: Any, room: str) -> None:
        async for message in ws:
            if message == "bye":
                await ws.close(4000, "bye")
                return
            await ws.send(message)

    return app


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(port: int) -> Samples:
    async with httpx.AsyncClient() as client:
        body = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(body)
        for s in f.samples
        if s.name.startswith("websocket_")
    }


def key(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted({"http_route": ROUTE, **labels}.items()))


async def settle(port: int, want: Any) -> Samples:
    for _ in range(100):
        got = await scrape(port)
        if want(got):
            return got
        await asyncio.sleep(0.02)
    return got


async def test_connections_messages_and_bytes_after_a_known_sequence(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(ENV_DIR, raising=False)  # one process: gauges without a pid label
    app = build()
    server = await app.serve(port=0)
    port = server.port
    url = f"ws://127.0.0.1:{port}/chat/lobby"
    try:
        async with websockets_client.connect(url) as one, websockets_client.connect(url) as two:
            await one.send("héllo")  # 6 bytes
            assert await one.recv() == "héllo"
            await two.send(b"\x01" * 100)
            assert await two.recv() == b"\x01" * 100
            got = await scrape(port)
            assert got[key("websocket_connections_active")] == 2
            assert got[key("websocket_connections_total")] == 2
        three = await websockets_client.connect(url)
        await three.send("bye")
        await three.wait_closed()
        got = await settle(port, lambda g: g.get(key("websocket_connections_active"), -1) == 0)
    finally:
        await server.shutdown(2.0)
        await app.stop()
    assert got[key("websocket_connections_total")] == 3
    assert got[key("websocket_connections_active")] == 0
    assert got[key("websocket_connections_closed_total", websocket_close_code="1000")] == 2
    assert got[key("websocket_connections_closed_total", websocket_close_code="4000")] == 1
    for direction in ("receive", "send"):
        assert got[key("websocket_messages_total", direction=direction, type="text")] == (
            2 if direction == "receive" else 1  # "bye" is not echoed
        )
        assert got[key("websocket_messages_total", direction=direction, type="binary")] == 1
        assert got[key("websocket_message_bytes_total", direction=direction, type="binary")] == 100
    assert got[key("websocket_message_bytes_total", direction="receive", type="text")] == 9
    assert got[key("websocket_message_bytes_total", direction="send", type="text")] == 6


async def test_metrics_disabled_means_no_websocket_observer() -> None:
    app = build(metrics_enabled=False)
    state = app.wire()
    assert state.ws_observer is None


def test_collector_alone() -> None:
    metrics = WebSocketMetrics()
    metrics.websocket_opened(None)
    metrics.websocket_message(None, True, False, 3)
    metrics.websocket_closed(None, 1006)
    body, _ = render(metrics.collect)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(body.decode())
        for s in f.samples
    }
    unmatched = (("http_route", "unmatched"),)
    assert samples[("websocket_connections_total", unmatched)] == 1
    assert samples[("websocket_connections_active", unmatched)] == 0
    assert (
        samples[
            (
                "websocket_connections_closed_total",
                (("http_route", "unmatched"), ("websocket_close_code", "1006")),
            )
        ]
        == 1
    )
