"""The application API end to end with httpx: routes, parameters, middleware, errors, bodies."""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

import httpx
import pytest
from _http_helpers import captured_logs, client_of, exchange, make_app, plugins, serving, status_of

from flowcoro.http import (
    App,
    CallNext,
    HTMLResponse,
    HTTPException,
    JSONResponse,
    RedirectResponse,
    Request,
    Response,
    Router,
)

request_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_var", default="-")


def build() -> App:
    app = make_app()

    @app.get("/")
    async def index(request: Request) -> str:
        return "index"

    @app.get("/users/{id:int}")
    async def user(request: Request, id: int) -> dict[str, Any]:
        return {"id": id, "route": request.route}

    @app.get("/files/{rest:path}")
    async def files(request: Request, rest: str) -> dict[str, str]:
        return {"rest": rest}

    @app.route("/items/{name}", methods=["GET", "PUT"])
    async def item(request: Request, name: str) -> dict[str, str]:
        return {"method": request.method, "name": name}

    @app.get("/query")
    async def query(request: Request) -> dict[str, Any]:
        return {"a": request.query.get("a"), "all": request.query.getlist("b")}

    @app.post("/json")
    async def echo_json(request: Request) -> Any:
        return await request.json()

    @app.get("/bytes")
    async def raw(request: Request) -> bytes:
        return b"\x00\x01"

    @app.get("/none")
    async def nothing(request: Request) -> None:
        return None

    @app.get("/html")
    async def html(request: Request) -> Response:
        return HTMLResponse("<p>hi</p>")

    @app.get("/redirect")
    async def redirect(request: Request) -> Response:
        return RedirectResponse("/target?x=1", status=302)

    @app.get("/teapot")
    async def teapot(request: Request) -> str:
        raise HTTPException(418, "short and stout", headers={"x-pot": "1"})

    @app.get("/crash")
    async def crash(request: Request) -> str:
        raise RuntimeError("secret database password in here")

    @app.get("/crash-later")
    async def crash_later(request: Request) -> str:
        await asyncio.sleep(0)
        raise RuntimeError("secret again")

    @app.get("/weird")
    async def weird(request: Request) -> Any:
        return object()

    @app.get("/cookies")
    async def cookies(request: Request) -> Response:
        response = JSONResponse(request.cookies)
        response.set_cookie("session", "abc def", httponly=True, max_age=60)
        response.delete_cookie("old")
        return response

    @app.get("/headers")
    async def headers(request: Request) -> dict[str, Any]:
        return {
            "ua": request.headers.get("user-agent"),
            "multi": request.headers.getlist("x-multi"),
            "client": request.client is not None,
            "version": request.http_version,
            "id": request.id,
        }

    @app.put("/state")
    async def state(request: Request) -> dict[str, Any]:
        request.state.seen = True
        return {"seen": request.state.seen, "len": len(await request.body())}

    return app


async def test_routes_and_results() -> None:
    async with (
        serving(build()) as (_, port),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
    ):
        r = await client.get("/")
        assert (r.status_code, r.text, r.headers["content-type"]) == (
            200,
            "index",
            "text/plain; charset=utf-8",
        )
        assert (await client.get("/users/42")).json() == {"id": 42, "route": "/users/{id:int}"}
        assert (await client.get("/users/x")).status_code == 404
        assert (await client.get("/files/a/b/c.txt")).json() == {"rest": "a/b/c.txt"}
        assert (await client.put("/items/pen")).json() == {"method": "PUT", "name": "pen"}
        assert (await client.get("/items/caf%C3%A9")).json()["name"] == "café"
        q = (await client.get("/query?a=1&b=2&b=3")).json()
        assert q == {"a": "1", "all": ["2", "3"]}
        assert (await client.post("/json", json={"k": [1, 2]})).json() == {"k": [1, 2]}
        bad = await client.post("/json", content=b"{nope")
        assert bad.status_code == 400
        r = await client.get("/bytes")
        assert (r.content, r.headers["content-type"]) == (b"\x00\x01", "application/octet-stream")
        assert (await client.get("/none")).status_code == 204
        assert (await client.get("/html")).headers["content-type"] == "text/html; charset=utf-8"
        r = await client.get("/redirect")
        assert (r.status_code, r.headers["location"]) == (302, "/target?x=1")
        r = await client.put("/state", content=b"12345")
        assert r.json() == {"seen": True, "len": 5}


async def test_errors_404_405_options_head() -> None:
    async with (
        serving(build()) as (_, port),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
    ):
        r = await client.get("/nowhere")
        assert r.status_code == 404
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["title"] == "Not Found"
        r = await client.delete("/items/pen")
        assert (r.status_code, r.headers["allow"]) == (405, "GET, HEAD, PUT, OPTIONS")
        r = await client.options("/items/pen")
        assert (r.status_code, r.headers["allow"]) == (204, "GET, HEAD, PUT, OPTIONS")
        r = await client.head("/users/1")
        assert (r.status_code, r.content, r.headers["content-length"]) == (200, b"", "34")
        r = await client.get("/teapot")
        assert r.status_code == 418
        assert r.json() == {
            "type": "about:blank",
            "title": "I'm a Teapot",
            "status": 418,
            "detail": "short and stout",
        }
        assert r.headers["x-pot"] == "1"
    data = b""
    async with serving(build()) as (_, port):
        data = await exchange(port, b"OPTIONS * HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert status_of(data) == 204


async def test_handler_exception_is_500_without_detail() -> None:
    with captured_logs() as records:
        await _crash_requests()
    errors = [r for r in records if r.get("event") == "http.unhandled_error"]
    assert [r["request_id"] for r in errors] == ["req-crash", "req-crash-later", "req-weird"]
    assert "secret database password" in str(errors[0])


async def _crash_requests() -> None:
    async with (
        serving(build()) as (_, port),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
    ):
        for path in ("/crash", "/crash-later", "/weird"):
            r = await client.get(path, headers={"x-request-id": "req-" + path[1:]})
            assert r.status_code == 500
            assert "secret" not in r.text
            assert r.json() == {
                "type": "about:blank",
                "title": "Internal Server Error",
                "status": 500,
            }
            assert r.headers["x-request-id"] == "req-" + path[1:]
        # The server goes on.
        assert (await client.get("/")).status_code == 200


async def test_cookies_headers_and_request_id() -> None:
    async with (
        serving(build()) as (_, port),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
    ):
        r = await client.get("/cookies", headers={"cookie": 'a=1; b="two"; a=3; junk'})
        assert r.json() == {"a": "1", "b": "two"}
        cookies = r.headers.get_list("set-cookie")
        assert cookies[0] == "session=abc%20def; Max-Age=60; Path=/; HttpOnly; SameSite=Lax"
        assert cookies[1].startswith("old=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT")
        r = await client.get(
            "/headers", headers=[("user-agent", "t/1"), ("x-multi", "1"), ("X-Multi", "2")]
        )
        body = r.json()
        assert body["ua"] == "t/1"
        assert body["multi"] == ["1", "2"]
        assert body["client"] is True
        assert body["version"] == "1.1"
        assert body["id"]


async def test_middleware_order_context_and_per_route() -> None:
    app = make_app()
    order: list[str] = []

    async def outer(request: Request, call_next: CallNext) -> Response:
        order.append("outer-in")
        token = request_var.set("from-outer")
        try:
            response = await call_next(request)
        finally:
            request_var.reset(token)
        response.set_header("x-outer", "1")
        order.append("outer-out")
        return response

    async def inner(request: Request, call_next: CallNext) -> Response:
        order.append("inner")
        return await call_next(request)

    async def route_only(request: Request, call_next: CallNext) -> Any:
        if request.query.get("deny"):
            return {"denied": True}
        return await call_next(request)

    app.add_middleware(outer)
    app.use(inner)

    @app.get("/ctx")
    async def ctx(request: Request) -> str:
        await asyncio.sleep(0)
        return request_var.get()

    @app.get("/guarded", middleware=[route_only])
    async def guarded(request: Request) -> str:
        return request_var.get()

    @app.get("/fail")
    async def fail(request: Request) -> str:
        raise HTTPException(409, "conflict")

    sub = Router(middleware=[route_only])

    @sub.get("/ping")
    async def ping(request: Request) -> str:
        return "pong"

    app.mount("/api", sub)

    async with client_of(app) as client:
        r = await client.get("/ctx")
        assert (r.text, r.headers["x-outer"]) == ("from-outer", "1")
        assert order == ["outer-in", "inner", "outer-out"]
        assert (await client.get("/guarded?deny=1")).json() == {"denied": True}
        assert (await client.get("/guarded")).text == "from-outer"
        r = await client.get("/fail")
        assert (r.status_code, r.headers["x-outer"]) == (409, "1")
        assert (await client.get("/api/ping")).text == "pong"
        assert (await client.get("/api/ping?deny=1")).json() == {"denied": True}
        r = await client.get("/missing")
        assert (r.status_code, r.headers["x-outer"]) == (404, "1")
        # The connection's context is untouched between requests.
        assert request_var.get() == "-"


@pytest.mark.parametrize("suspend", [False, True])
async def test_the_outermost_middleware_may_return_any_response_value(suspend: bool) -> None:
    """The outermost middleware (a coroutine function) is run by the server itself, which
    converts what it returns as it converts a handler's result; a middleware that is a plain
    callable returning an awaitable is wrapped as before. Exceptions it raises reach the
    exception handlers (or become the 500), whether or not it suspended first."""
    from flowcoro.http.middleware import _link, _outermost, compose

    app = make_app()

    class Refused(Exception):
        pass

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Exception) -> Response:
        return Response(b"refused", 403)

    async def outer(request: Request, call_next: CallNext) -> Any:
        if suspend:
            await asyncio.sleep(0)
        kind = request.query.get("as")
        if kind == "dict":
            return {"outer": (await call_next(request)).status}
        if kind == "text":
            return "plain"
        if kind == "refuse":
            raise Refused()
        if kind == "crash":
            raise RuntimeError("middleware bug")
        if kind == "bad":
            return object()
        return await call_next(request)

    class Counting:  # not a coroutine function: its awaitable goes through a wrapper
        seen = 0

        def __call__(self, request: Request, call_next: CallNext) -> Any:
            Counting.seen += 1
            return call_next(request)

    app.add_middleware(outer)
    app.add_middleware(Counting())

    @app.get("/")
    async def index(request: Request) -> dict[str, str]:
        return {"handler": "ok"}

    async with client_of(app) as client:
        assert (await client.get("/")).json() == {"handler": "ok"}
        assert (await client.get("/?as=dict")).json() == {"outer": 200}
        assert (await client.get("/?as=text")).text == "plain"
        r = await client.get("/?as=refuse")
        assert (r.status_code, r.text) == (403, "refused")
        assert (await client.get("/?as=crash")).status_code == 500
        assert (await client.get("/?as=bad")).status_code == 500
        assert (await client.get("/nowhere?as=dict")).json() == {"outer": 404}
    assert Counting.seen == 3  # the requests that reached call_next

    async def endpoint(request: Request) -> Response:
        return Response(b"e")

    # Which layer gets which wrapper: only an outermost coroutine function is run as it is.
    assert compose(endpoint, [outer]).__qualname__ == _outermost(outer, endpoint).__qualname__
    assert compose(endpoint, [Counting()]).__qualname__ == _link(outer, endpoint).__qualname__
    inner_first = compose(endpoint, [Counting(), outer])
    assert inner_first.__qualname__ == _link(outer, endpoint).__qualname__


async def test_exception_handlers() -> None:
    app = make_app()

    class Missing(LookupError):
        pass

    @app.exception_handler(LookupError)
    async def on_lookup(request: Request, exc: Exception) -> Response:
        return JSONResponse({"missing": str(exc)}, status=404)

    @app.exception_handler(ValueError)
    async def on_value(request: Request, exc: Exception) -> Response:
        raise RuntimeError("the handler itself fails")

    @app.get("/a")
    async def a(request: Request) -> str:
        raise Missing("thing")

    @app.get("/b")
    async def b(request: Request) -> str:
        raise ValueError("x")

    async with client_of(app) as client:
        r = await client.get("/a")
        assert (r.status_code, r.json()) == (404, {"missing": "thing"})
        assert (await client.get("/b")).status_code == 500


async def test_observers_and_access_log() -> None:
    app = make_app()
    app.access_log = True
    seen: list[tuple[str, str | None, int]] = []

    class Observer:
        def request_started(self, request: Request) -> None:
            seen.append(("start", request.path, 0))

        def request_finished(
            self, request: Request, route: str | None, status: int, duration: float
        ) -> None:
            assert duration >= 0
            seen.append(("end", route, status))

    class Broken:
        def request_started(self, request: Request) -> None:
            pass

        def request_finished(self, *args: Any) -> None:
            raise RuntimeError("observer bug")

    app.add_observer(Observer())
    app.add_observer(Broken())  # type: ignore[arg-type]

    @app.get("/u/{id:int}")
    async def u(request: Request, id: int) -> str:
        return "u"

    with captured_logs() as records:
        async with client_of(app) as client:
            await client.get("/u/1")
            await client.get("/nope")
    assert seen == [
        ("start", "/u/1", 0),
        ("end", "/u/{id:int}", 200),
        ("start", "/nope", 0),
        ("end", None, 404),
    ]
    access = [r for r in records if r.get("event") == "http.request"]
    assert [(r["method"], r["path"], r["status"]) for r in access] == [
        ("GET", "/u/1", 200),
        ("GET", "/nope", 404),
    ]
    assert any(r.get("event") == "http.observer_failed" for r in records)


async def test_routes_fixed_once_serving_and_settings() -> None:
    app = App(
        "t",
        plugins=plugins(),
        http_max_body_size=5,
        http_keepalive_timeout=1.5,
        env={},
    )
    assert app.limits.max_body_size == 5
    assert app.limits.keepalive_timeout == 1.5

    @app.post("/")
    async def index(request: Request) -> int:
        return len(await request.body())  # type: ignore[return-value]

    async with serving(app) as (_, port):
        with pytest.raises(RuntimeError, match="already serving"):
            app.add_route("/x", index)
        data = await exchange(
            port, b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\n\r\n123456789"
        )
        assert status_of(data) == 413


async def test_middleware_paths_and_app_decorators() -> None:
    app = make_app()

    async def passthrough(request: Request, call_next: CallNext) -> Response:
        return await call_next(request)

    app.add_middleware(passthrough)
    with pytest.raises(TypeError, match="not callable"):
        app.add_middleware("nope")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Exception subclass"):
        app.exception_handler(int)(passthrough)  # type: ignore[arg-type]

    @app.patch("/p/{id:int}")
    async def patch(request: Request, id: int) -> dict[str, int]:
        return {"patched": id}

    @app.delete("/p/{id:int}")
    async def delete(request: Request, id: int) -> Response:
        return Response(b"", 204)

    @app.head("/h")
    async def head(request: Request) -> Response:
        return Response(b"", 200, {"x-head": "1"})

    @app.options("/o")
    async def options(request: Request) -> Response:
        return Response(b"", 200, {"x-options": "1"})

    @app.get("/raw")
    async def raw(request: Request) -> bytes:
        return b"raw"

    @app.post("/twice")
    async def twice(request: Request) -> str:
        body = await request.body()
        chunks = [c async for c in request.stream()]
        assert chunks == [body]
        return "ok"

    @app.post("/stream-then-body")
    async def stream_then_body(request: Request) -> str:
        async for _ in request.stream():
            pass
        with pytest.raises(RuntimeError, match="already consumed"):
            async for _ in request.stream():
                pass
        return "ok"

    async with client_of(app) as client:
        assert (await client.patch("/p/3")).json() == {"patched": 3}
        assert (await client.delete("/p/3")).status_code == 204
        assert (await client.head("/h")).headers["x-head"] == "1"
        assert (await client.options("/o")).headers["x-options"] == "1"
        assert (await client.get("/raw")).content == b"raw"
        assert (await client.post("/twice", content=b"a" * 100_000)).text == "ok"

        async def chunks():  # type: ignore[no-untyped-def]
            for _ in range(3):
                yield b"x" * 1000
                await asyncio.sleep(0.01)

        assert (await client.post("/stream-then-body", content=chunks())).text == "ok"
        assert (await client.post("/twice", content=chunks())).text == "ok"


async def test_timeouts_and_current_task_from_the_first_line() -> None:
    from flowcoro.core import DeadlineExceeded, deadline

    app = make_app()

    @app.get("/task")
    async def task(request: Request) -> dict[str, bool]:
        return {"task": asyncio.current_task() is not None}

    @app.get("/timeout")
    async def timeout(request: Request) -> str:
        try:
            async with asyncio.timeout(0.05):
                await asyncio.sleep(5)
        except TimeoutError:
            return "timed out"
        return "slept"

    @app.get("/deadline")
    async def with_deadline(request: Request) -> str:
        try:
            async with deadline(0.05):
                await asyncio.sleep(5)
        except DeadlineExceeded:
            return "deadline"
        return "slept"

    @app.get("/quick")
    async def quick(request: Request) -> str:
        async with asyncio.timeout(1):
            return "quick"

    async with client_of(app) as client:
        assert (await client.get("/task")).json() == {"task": True}
        assert (await client.get("/timeout")).text == "timed out"
        assert (await client.get("/deadline")).text == "deadline"
        assert (await client.get("/quick")).text == "quick"
        # The connection's runner task goes on serving after a timeout cancelled it.
        assert (await client.get("/timeout")).text == "timed out"
        assert (await client.get("/task")).json() == {"task": True}
