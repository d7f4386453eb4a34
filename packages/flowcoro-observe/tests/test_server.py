from __future__ import annotations

import asyncio

import httpx
from prometheus_client.parser import text_string_to_metric_families

from flowcoro.observe import MetricsServer, Observe


async def raw(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    if data and not data.endswith(b"\r\n\r\n"):
        writer.write_eof()
    reply = await reader.read()
    writer.close()
    await writer.wait_closed()
    return reply


async def test_separate_port_endpoints_and_bad_requests() -> None:
    observe = Observe(metrics_path="/m", metrics_port=0, loop_lag_interval=0.01)
    await observe.start(None)
    server = MetricsServer(observe)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            await asyncio.sleep(0.05)  # a few loop-lag samples
            response = await client.get("/m")
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/plain; version=")
            names = {f.name for f in text_string_to_metric_families(response.text)}
            assert {
                "flowcoro_event_loop_lag_seconds",
                "process_cpu_seconds",
                "process_resident_memory_bytes",
                "process_open_fds",
                "python_gc_collections",
                "http_server_active_requests",
            } <= names
            om = await client.get("/m", headers={"accept": "application/openmetrics-text"})
            assert om.headers["content-type"].startswith("application/openmetrics-text")
            assert om.text.endswith("# EOF\n")
            assert (await client.get("/healthz")).status_code == 200
            assert (await client.get("/readyz")).status_code == 200
            assert (await client.get("/nope")).status_code == 404
            assert (await client.post("/m")).status_code == 405
        assert (await raw(server.port, b"garbage\r\n\r\n")).startswith(b"HTTP/1.1 400")
        assert (await raw(server.port, b"GET /m HTTP/1.1\r\n")).startswith(b"HTTP/1.1 400")
        assert (await raw(server.port, b"GET /m HTTP/1.1\r\nx: " + b"a" * 9000)).startswith(
            b"HTTP/1.1 400"
        )
        # A connection left open is closed at stop.
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        await asyncio.sleep(0.01)
    finally:
        await server.stop()
        await server.stop()  # twice: nothing left to do
        await observe.stop()
    assert await reader.read() == b""
    writer.close()
    await writer.wait_closed()


async def test_workers_sharing_a_directory_share_the_metrics_port(
    tmp_path: object, unused_tcp_port: int
) -> None:
    first = Observe(metrics_dir=str(tmp_path))
    second = Observe(metrics_dir=str(tmp_path))
    servers = [MetricsServer(o, port=unused_tcp_port) for o in (first, second)]
    for server in servers:
        await server.start()  # the second bind succeeds: SO_REUSEPORT
    try:
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{unused_tcp_port}/metrics")
        assert response.status_code == 200
    finally:
        for server in servers:
            await server.stop()


async def test_metrics_disabled_on_the_separate_port() -> None:
    observe = Observe(metrics_enabled=False)
    server = MetricsServer(observe, port=0)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            assert (await client.get("/metrics")).status_code == 404
            assert (await client.get("/healthz")).status_code == 200
    finally:
        await server.stop()
