"""The HTTP client against our own flowcoro-http server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from _http_helpers import make_app, serving

from flowcoro.http import App, RedirectResponse, Request, StreamingResponse
from flowcoro.http.client import Client


def build() -> App:
    app = make_app()

    @app.get("/")
    async def index(request: Request) -> str:
        return "index"

    @app.post("/json")
    async def echo_json(request: Request) -> Any:
        return {"got": await request.json(), "ua": request.headers.get("user-agent")}

    @app.put("/upload")
    async def upload(request: Request) -> dict[str, Any]:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
        return {"size": size}

    @app.get("/stream")
    async def stream(request: Request) -> StreamingResponse:
        async def gen() -> AsyncIterator[bytes]:
            for i in range(5):
                yield b"chunk%d;" % i
                await asyncio.sleep(0)

        return StreamingResponse(gen(), media_type="text/plain")

    @app.get("/go")
    async def go(request: Request) -> RedirectResponse:
        return RedirectResponse("/")

    return app


async def test_against_the_flowcoro_server() -> None:
    async with serving(build()) as (_, port), Client(base_url=f"http://127.0.0.1:{port}") as c:
        r = await c.get("/")
        assert (r.status_code, r.text) == (200, "index")
        r = await c.post("/json", json={"a": [1, 2]})
        assert r.json()["got"] == {"a": [1, 2]}
        assert r.json()["ua"].startswith("flowcoro-http/")

        async def body() -> AsyncIterator[bytes]:
            for _ in range(10):
                yield b"x" * 10_000

        r = await c.put("/upload", content=body())
        assert r.json() == {"size": 100_000}
        async with c.stream("GET", "/stream") as s:
            chunks = [chunk async for chunk in s.aiter_bytes()]
        assert b"".join(chunks) == b"chunk0;chunk1;chunk2;chunk3;chunk4;"
        r = await c.get("/go")
        assert (r.status_code, r.text, len(r.history)) == (200, "index", 1)
        assert (await c.get("/missing")).status_code == 404
        # Concurrency over the pool, all on kept-alive connections.
        results = await asyncio.gather(*(c.get("/") for _ in range(50)))
        assert {r.text for r in results} == {"index"}
        stats = next(iter(c.pool_statistics().values()))
        assert stats.in_use == 0
        assert stats.reuses > 0
