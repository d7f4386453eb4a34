"""A flowcoro App exported with ``app.asgi``: under uvicorn on a real socket, and driven message
by message for the paths uvicorn cannot reach (pathsend, odd scopes)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from _http_helpers import make_app

from flowcoro.http import HTTPException, JSONResponse, Request, Response, StreamingResponse
from flowcoro.http.staticfiles import file_response


class Boom(Exception):
    pass


def build(tmp: Path, events: list[str]) -> Any:
    app = make_app(max_body_size=1000)
    (tmp / "f.txt").write_bytes(b"0123456789")

    @app.on_startup
    async def up() -> None:
        events.append("startup")

    @app.on_shutdown
    async def down() -> None:
        events.append("shutdown")

    @app.get("/")
    async def index(request: Request) -> str:
        return "index"

    @app.get("/users/{id:int}")
    async def user(request: Request, id: int) -> dict[str, Any]:
        return {"id": id, "route": request.route, "q": request.query.get("q")}

    @app.post("/echo")
    async def echo(request: Request) -> Response:
        return Response(await request.body(), 201, {"x-len": "1"}, media_type="text/plain")

    @app.get("/stream")
    async def stream(request: Request) -> Response:
        async def gen() -> AsyncIterator[bytes | str]:
            yield b"a"
            yield ""
            yield "b"

        return StreamingResponse(gen(), media_type="text/plain")

    @app.get("/list")
    async def listed(request: Request) -> Response:
        return StreamingResponse([b"x", "y"], content_length=2)

    @app.get("/file")
    async def file(request: Request) -> Response:
        return file_response(request, tmp / "f.txt")

    @app.get("/teapot")
    async def teapot(request: Request) -> str:
        raise HTTPException(418, "short")

    @app.get("/boom")
    async def boom(request: Request) -> str:
        raise Boom()

    @app.get("/crash")
    async def crash(request: Request) -> str:
        raise RuntimeError("secret")

    @app.get("/none")
    async def none(request: Request) -> None:
        return None

    @app.exception_handler(Boom)
    async def on_boom(request: Request, exc: Boom) -> Response:
        if request.query.get("again"):
            raise RuntimeError("handler failed")
        return JSONResponse({"boom": True}, 409)

    return app


async def test_under_uvicorn(tmp_path: Path, unused_tcp_port: int) -> None:
    events: list[str] = []
    app = build(tmp_path, events)
    config = uvicorn.Config(
        app.asgi, host="127.0.0.1", port=unused_tcp_port, lifespan="on", log_level="warning"
    )
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.ensure_future(server.serve())
    try:
        for _ in range(500):
            if server.started:
                break
            await asyncio.sleep(0.01)
        assert events == ["startup"]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{unused_tcp_port}") as c:
            r = await c.get("/")
            assert r.text == "index"
            r = await c.get("/users/5?q=z")
            assert r.json() == {"id": 5, "route": "/users/{id:int}", "q": "z"}
            r = await c.post("/echo", content=b"hello")
            assert (r.status_code, r.text, r.headers["x-len"]) == (201, "hello", "1")
            r = await c.post("/echo", content=b"x" * 2000)
            assert r.status_code == 413
            r = await c.get("/echo")
            assert r.status_code == 405
            assert "POST" in r.headers["allow"]
            r = await c.get("/missing")
            assert r.status_code == 404
            r = await c.get("/stream")
            assert r.text == "ab"
            r = await c.get("/list")
            assert r.text == "xy"
            assert r.headers["content-length"] == "2"
            r = await c.get("/file")
            assert r.text == "0123456789"
            r = await c.get("/file", headers={"range": "bytes=2-3"})
            assert r.status_code == 206
            assert r.text == "23"
            r = await c.head("/file")
            assert r.headers["content-length"] == "10"
            assert r.content == b""
            r = await c.head("/")
            assert r.headers["content-length"] == "5"
            assert r.content == b""
            r = await c.get("/teapot")
            assert r.status_code == 418
            r = await c.get("/boom")
            assert r.status_code == 409
            r = await c.get("/boom?again=1")
            assert r.status_code == 500
            r = await c.get("/crash")
            assert r.status_code == 500
            assert "secret" not in r.text
            r = await c.get("/none")
            assert r.status_code == 204
    finally:
        server.should_exit = True
        await task
    assert events == ["startup", "shutdown"]


async def test_messages_by_hand(tmp_path: Path) -> None:
    events: list[str] = []
    app = build(tmp_path, events)
    adapter = app.asgi
    assert app.asgi is adapter

    async def call(scope: dict[str, Any], incoming: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return incoming.pop(0) if incoming else {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            out.append(message)

        await adapter(scope, receive, send)
        return out

    base = {"type": "http", "method": "GET", "query_string": b"", "headers": []}
    # no lifespan: started on the first request
    out = await call({**base, "path": "/file", "extensions": {"http.response.pathsend": {}}}, [])
    assert out[1] == {"type": "http.response.pathsend", "path": str(tmp_path / "f.txt")}
    assert events == ["startup"]
    # body in several messages; a disconnect ends it early
    msgs = [
        {"type": "http.request", "body": b"ab", "more_body": True},
        {"type": "http.request", "body": b"cd", "more_body": False},
    ]
    out = await call({**base, "method": "POST", "path": "/echo"}, msgs)
    assert out[1]["body"] == b"abcd"
    out = await call({**base, "method": "POST", "path": "/echo"}, [])
    assert out[1]["body"] == b""
    with pytest.raises(RuntimeError, match="websocket"):
        await call({"type": "websocket", "path": "/"}, [])
    await app.stop()


async def test_lifespan_failure_is_reported() -> None:
    app = make_app()

    @app.on_startup
    async def bad_start() -> None:
        raise RuntimeError("no database")

    out: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "lifespan.startup"}

    async def send(message: dict[str, Any]) -> None:
        out.append(message)

    await app.asgi({"type": "lifespan"}, receive, send)
    assert out[0]["type"] == "lifespan.startup.failed"
    assert "no database" in out[0]["message"]
    await app.stop()
