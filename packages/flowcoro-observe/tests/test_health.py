from __future__ import annotations

import asyncio
import json

import httpx

from flowcoro.core import App, Plugins, Pool
from flowcoro.observe import MetricsServer, Observe, liveness, readiness


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except OSError:
            pass


def db_like_pool(port: int) -> Pool[Conn]:
    async def connect() -> Conn:
        return Conn(*await asyncio.open_connection("127.0.0.1", port))

    async def close(conn: Conn) -> None:
        await conn.close()

    return Pool(connect, name="db", max_size=2, acquire_timeout=1.0, close=close)


async def _accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


def new_app() -> App:
    return App("test", plugins=Plugins(autoload=False), env={})


async def test_readiness_flips_when_the_database_goes_away_and_recovers(
    unused_tcp_port: int,
) -> None:
    app = new_app()
    pool = db_like_pool(unused_tcp_port)

    async def database() -> None:
        async with pool.acquire() as conn:
            pool.discard(conn)  # a fresh connection per check: really reach the server

    app.health.register("database", database, timeout=1.0)
    observe = Observe.for_app(app)
    server = MetricsServer(observe, port=0)
    await server.start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        async with httpx.AsyncClient(base_url=base) as client:
            # The port is closed: the check fails with the connection error.
            response = await client.get("/readyz")
            assert response.status_code == 503
            body = response.json()
            assert body["status"] == "failing"
            assert body["checks"]["database"]["ok"] is False
            assert "ConnectionRefusedError" in body["checks"]["database"]["detail"]
            assert body["checks"]["database"]["latency_ms"] >= 0
            # The database comes up: ready.
            db = await asyncio.start_server(_accept, "127.0.0.1", unused_tcp_port)
            try:
                response = await client.get("/readyz")
                assert response.status_code == 200, response.text
                assert response.json()["checks"]["database"]["ok"] is True
                # Liveness never depends on checks.
                assert (await client.get("/healthz")).json() == {"status": "ok"}
                # Shutdown began: readiness fails at once, before anything closes.
                app.begin_shutdown()
                response = await client.get("/readyz")
                assert response.status_code == 503
                assert response.json()["status"] == "draining"
            finally:
                db.close()
                await db.wait_closed()
    finally:
        await server.stop()
        await pool.aclose()


async def test_readiness_bounds_and_edge_cases() -> None:
    app = new_app()

    async def slow() -> None:
        await asyncio.sleep(5)

    app.health.register("slow", slow, timeout=5.0)
    status, body = await readiness(app, timeout=0.05)
    assert status == 503
    assert json.loads(body)["detail"] == "timed out after 0.05s"

    class NoHealth:
        draining = False

    assert (await readiness(NoHealth()))[0] == 200
    assert liveness() == (200, b'{"status":"ok"}')

    app2 = new_app()

    async def flips_draining() -> None:
        app2.begin_shutdown()

    app2.health.register("flip", flips_draining)
    status, body = await readiness(app2)
    assert status == 503
    assert json.loads(body)["status"] == "draining"
