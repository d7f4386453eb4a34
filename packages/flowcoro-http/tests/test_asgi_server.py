"""ASGI applications (real Starlette and FastAPI, and hand-written ASGI callables) served by the
flowcoro HTTP protocol through `from_asgi`."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from _http_helpers import exchange, plugins, read_response, serving, status_of
from fastapi import BackgroundTasks, FastAPI
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request as SRequest
from starlette.responses import FileResponse as SFileResponse
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route

from flowcoro.http.asgi import Lifespan, LifespanError, from_asgi, is_asgi_app


class Item(BaseModel):
    name: str
    price: float


def wrap(asgi: Any, **kw: Any) -> Any:
    return from_asgi(asgi, plugins=plugins(), **kw)


def starlette_app(events: list[str], tmp: str | None = None) -> Starlette:
    async def home(request: SRequest) -> PlainTextResponse:
        return PlainTextResponse(f"home {request.state.greeting}")

    async def item(request: SRequest) -> JSONResponse:
        return JSONResponse(
            {
                "id": request.path_params["id"],
                "q": request.query_params.get("q"),
                "host": request.headers.get("host"),
            }
        )

    async def echo(request: SRequest) -> PlainTextResponse:
        body = await request.body()
        return PlainTextResponse(body.decode()[::-1], status_code=201)

    async def upload(request: SRequest) -> JSONResponse:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
        return JSONResponse({"size": size})

    async def stream(request: SRequest) -> StreamingResponse:
        async def gen() -> AsyncIterator[bytes]:
            for i in range(5):
                yield f"part{i};".encode()
                await asyncio.sleep(0)

        return StreamingResponse(gen(), media_type="text/plain")

    async def crash(request: SRequest) -> PlainTextResponse:
        raise RuntimeError("boom")

    async def file(request: SRequest) -> SFileResponse:
        assert tmp is not None
        return SFileResponse(os.path.join(tmp, "f.txt"))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, str]]:
        events.append("startup")
        yield {"greeting": "hello"}
        events.append("shutdown")

    return Starlette(
        routes=[
            Route("/", home),
            Route("/items/{id:int}", item),
            Route("/echo", echo, methods=["POST"]),
            Route("/upload", upload, methods=["PUT"]),
            Route("/stream", stream),
            Route("/crash", crash),
            Route("/file", file),
        ],
        lifespan=lifespan,
    )


async def test_starlette_routing_bodies_streaming_lifespan(tmp_path: Any) -> None:
    (tmp_path / "f.txt").write_bytes(b"file body")
    events: list[str] = []
    app = wrap(starlette_app(events, str(tmp_path)))
    async with serving(app) as (_, port):
        assert events == ["startup"]
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base) as client:
            r = await client.get("/")
            assert (r.status_code, r.text) == (200, "home hello")
            assert r.headers["content-length"] == "10"
            r = await client.get("/items/42?q=x")
            assert r.json() == {"id": 42, "q": "x", "host": f"127.0.0.1:{port}"}
            r = await client.get("/items/nope")
            assert r.status_code == 404
            r = await client.post("/echo", content=b"abc")
            assert (r.status_code, r.text) == (201, "cba")
            r = await client.get("/echo")
            assert r.status_code == 405

            async def chunks() -> AsyncIterator[bytes]:
                for _ in range(10):
                    yield b"x" * 1000

            r = await client.put("/upload", content=chunks())
            assert r.json() == {"size": 10000}
            r = await client.get("/stream")
            assert r.text == "part0;part1;part2;part3;part4;"
            assert r.headers["transfer-encoding"] == "chunked"
            r = await client.get("/crash")
            assert r.status_code == 500
            assert "boom" not in r.text
            r = await client.get("/file")
            assert r.content == b"file body"
            assert r.headers["content-type"].startswith("text/plain")
            r = await client.head("/file")
            assert r.headers["content-length"] == "9"
            assert r.content == b""
            r = await client.head("/")
            assert r.headers["content-length"] == "10"
            assert r.content == b""
    assert events == ["startup", "shutdown"]


async def test_fastapi_bodies_and_background_tasks() -> None:
    done: list[str] = []
    api = FastAPI()

    async def later(name: str) -> None:
        await asyncio.sleep(0.05)
        done.append(name)

    @api.post("/items")
    async def create(item: Item, tasks: BackgroundTasks) -> dict[str, Any]:
        tasks.add_task(later, item.name)
        return {"name": item.name, "total": item.price * 2}

    @api.get("/users/{uid}")
    async def user(uid: int) -> dict[str, int]:
        return {"uid": uid}

    app = wrap(api)
    async with (
        serving(app) as (_, port),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
    ):
        r = await client.post("/items", json={"name": "pen", "price": 1.5})
        assert r.json() == {"name": "pen", "total": 3.0}
        # the response did not wait for the background task
        assert done == []
        r = await client.post("/items", json={"name": 3})
        assert r.status_code == 422
        r = await client.get("/users/7")
        assert r.json() == {"uid": 7}
        for _ in range(100):
            if done:
                break
            await asyncio.sleep(0.01)
        assert done == ["pen"]


async def test_raw_asgi_messages_and_errors() -> None:
    seen: dict[str, Any] = {}

    async def raw(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            raise RuntimeError("no lifespan here")  # "auto": serving goes on
        path = scope["path"]
        seen["scope"] = scope
        if path == "/nothing":
            return
        if path == "/double":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.start", "status": 200, "headers": []})
        if path == "/bodyfirst":
            await send({"type": "http.response.body", "body": b"x"})
        if path == "/badstatus":
            await send({"type": "http.response.start", "status": 99})
        if path == "/badheader":
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"x", b"a\r\nb")]}
            )
        if path == "/unknown":
            await send({"type": "http.whatever"})
        if path == "/pathsend-early":
            await send({"type": "http.response.pathsend", "path": "/etc/hostname"})
        if path == "/midway":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"a", "more_body": True})
            return  # returned mid-response: the connection is aborted
        if path == "/midcrash":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"a", "more_body": True})
            raise RuntimeError("mid-stream")
        if path == "/after":
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-length", b"2"), (b"connection", b"close")],
                }
            )
            await send({"type": "http.response.body", "body": b"ok"})
            message = await receive()
            seen["after"] = message
            with pytest.raises(RuntimeError):
                await send({"type": "http.response.body", "body": b"late"})
            raise RuntimeError("after the response: logged only")
        if path == "/len":
            # a declared Content-Length with a streamed body
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-length", b"4")],
                }
            )
            await send({"type": "http.response.body", "body": b"ab", "more_body": True})
            await send({"type": "http.response.body", "body": b"cd", "more_body": False})
            return
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body"})

    assert is_asgi_app(raw)
    app = wrap(raw)
    async with serving(app) as (_, port):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for path in (
                "/nothing",
                "/double",
                "/bodyfirst",
                "/badstatus",
                "/badheader",
                "/unknown",
                "/pathsend-early",
            ):
                r = await client.get(path)
                assert r.status_code == 500, path
            for path in ("/midway", "/midcrash"):
                with pytest.raises(httpx.HTTPError):
                    await client.get(path)
            r = await client.get("/after?x=1", headers={"x-a": "b"})
            assert r.text == "ok"
            r = await client.get("/len")
            assert r.text == "abcd"
            assert r.headers["content-length"] == "4"
            r = await client.get("/%C3%A9t%C3%A9")
            assert r.status_code == 204
        scope = seen["scope"]
        assert scope["path"] == "/été"
        assert scope["raw_path"] == b"/%C3%A9t%C3%A9"
        assert scope["asgi"]["version"] == "3.0"
        assert scope["client"][0] == "127.0.0.1"
        for _ in range(100):
            if "after" in seen:
                break
            await asyncio.sleep(0.01)
        assert seen["after"] == {"type": "http.disconnect"}


async def test_streaming_backpressure_and_disconnect() -> None:
    state: dict[str, Any] = {"sent": 0}
    finished = asyncio.Event()

    async def endless(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            while True:
                await send({"type": "http.response.body", "body": b"x" * 65536, "more_body": True})
                state["sent"] += 1
        except OSError as exc:
            state["error"] = exc
            # receive reports the disconnect too
            state["message"] = await receive()
            finished.set()

    app = wrap(endless, lifespan="off")
    async with serving(app) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        await reader.readexactly(1000)
        await asyncio.sleep(0.2)
        # the client reads nothing more: the application is held back by the socket buffers
        assert state["sent"] < 200
        writer.close()
        await writer.wait_closed()
        await asyncio.wait_for(finished.wait(), 5)
        assert isinstance(state["error"], OSError)
        assert state["message"] == {"type": "http.disconnect"}


async def test_http10_and_pipelined_keepalive() -> None:
    async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
        msg = await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-v", b"1")]})
        await send({"type": "http.response.body", "body": b"hi" + msg["body"]})

    app = wrap(hello, lifespan="off")
    async with serving(app) as (_, port):
        data = await exchange(port, b"GET / HTTP/1.0\r\n\r\n")
        assert status_of(data) == 200
        assert data.endswith(b"hi")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
            b"GET /b HTTP/1.1\r\nHost: t\r\n\r\n"
        )
        assert (await read_response(reader))[2] == b"hiabc"
        status, headers, body = await read_response(reader)
        assert (status, headers["x-v"], body) == (200, "1", b"hi")
        writer.close()
        await writer.wait_closed()


class _Life:
    def __init__(self, startup: str | None, shutdown: str = "complete", *, ret: bool = False):
        self.startup = startup
        self.shutdown = shutdown
        self.ret = ret

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        await receive()
        if self.ret:
            return
        if self.startup is None:
            await asyncio.sleep(10)
        await send({"type": f"lifespan.startup.{self.startup}", "message": "db down"})
        if self.startup != "complete":
            return
        await receive()
        await send({"type": f"lifespan.shutdown.{self.shutdown}", "message": "flush failed"})


async def test_lifespan_outcomes() -> None:
    span = Lifespan(_Life("failed"))
    with pytest.raises(LifespanError, match="db down"):
        await span.startup()
    span = Lifespan(_Life("weird"))
    with pytest.raises(LifespanError, match="unexpected"):
        await span.startup()
    span = Lifespan(_Life("complete", "failed"))
    await span.startup()
    with pytest.raises(LifespanError, match="flush failed"):
        await span.shutdown()
    span = Lifespan(_Life(None), timeout=0.05)
    with pytest.raises(LifespanError, match="in time"):
        await span.startup()
    await span._finish()
    span = Lifespan(_Life("complete", ret=True), mode="on")
    with pytest.raises(LifespanError, match="does not support"):
        await span.startup()
    span = Lifespan(_Life("complete", ret=True))
    await span.startup()  # auto: an app that just returns has no lifespan
    await span.shutdown()
    off = Lifespan(_Life("failed"), mode="off")
    await off.startup()
    await off.shutdown()
    with pytest.raises(ValueError, match="lifespan"):
        Lifespan(_Life("complete"), mode="maybe")  # type: ignore[arg-type]


async def test_lifespan_failure_stops_app_start() -> None:
    app = wrap(_Life("failed"))
    with pytest.raises(BaseException, match="db down"):
        await app.start()
    await app.stop()


def test_is_asgi_app() -> None:
    async def three(scope: Any, receive: Any, send: Any) -> None: ...

    async def two(scope: Any, receive: Any) -> None: ...

    def sync(scope: Any, receive: Any, send: Any) -> None: ...

    assert is_asgi_app(three)
    assert is_asgi_app(Starlette())
    assert is_asgi_app(_Life("complete"))
    assert not is_asgi_app(two)
    assert not is_asgi_app(sync)
    assert not is_asgi_app(Starlette)
    assert not is_asgi_app(object())


def test_serve_detects_asgi(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from flowcoro.core.errors import FlowCoroError
    from flowcoro.http import App
    from flowcoro.http.cli import load_app

    (tmp_path / "asgi_target_mod.py").write_text(
        "from starlette.applications import Starlette\napp = Starlette()\nvalue = 3\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    app = load_app("asgi_target_mod:app")
    assert isinstance(app, App)
    assert app.name == "asgi_target_mod"
    assert isinstance(load_app("asgi_target_mod:app", "asgi"), App)
    with pytest.raises(FlowCoroError, match="not an ASGI application"):
        load_app("asgi_target_mod:value", "asgi")


async def test_suspending_app_waiting_receive_and_cancellation() -> None:
    started = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError("no lifespan")
        await asyncio.sleep(0.01)  # suspends before answering: continues in a task
        first = await receive()
        waiting = asyncio.ensure_future(receive())  # nothing more to read: waits for the end
        if scope["path"] == "/hang":
            started.set()
            await asyncio.sleep(30)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [[bytearray(b"X-Kind"), bytearray(b"list")]],
            }
        )
        await send({"type": "http.response.body", "body": first["body"]})
        assert (await waiting)["type"] == "http.disconnect"
        if scope["path"] == "/late":
            await asyncio.sleep(0.2)  # still running at shutdown: waited for

    app_ = wrap(app)
    async with (
        serving(app_) as (_, port),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
    ):
        r = await client.post("/", content=b"body")
        assert r.text == "body"
        assert r.headers["x-kind"] == "list"
        hung = asyncio.ensure_future(client.get("/hang"))
        await started.wait()
        for task in list(app_.asgi_bridge.tasks):
            task.cancel()
        r = await hung
        assert r.status_code == 500
        r = await client.get("/late")
        assert r.text == ""
