"""Request observers on the protocol's fast path: one observer is called directly (no composed
wrapper), and its failures are logged without affecting the response."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable
from typing import Any

from _http_helpers import captured_logs, client_of, make_app

from flowcoro.http import HTTPException, Request, Response, StreamingResponse
from flowcoro.http.state import RequestObserver, ServerState


async def test_single_observer_is_called_directly_and_its_failure_is_logged() -> None:
    app = make_app()
    seen: list[tuple[str, str | None, int]] = []

    class Failing(RequestObserver):
        def request_started(self, request: Request) -> None:
            seen.append(("start", request.path, 0))

        def request_finished(
            self, request: Request, route: str | None, status: int, duration: float
        ) -> None:
            assert duration >= 0
            seen.append(("end", route, status))
            raise RuntimeError("observer bug")

    observer = Failing()
    app.add_observer(observer)

    @app.get("/items/{id:int}")
    async def item(request: Request, id: int) -> dict[str, int]:
        return {"id": id}

    state = app.wire()
    # One observer and no access log: its own bound methods, no wrapper in between.
    assert state.on_start == observer.request_started
    assert state.on_finish == observer.request_finished

    with captured_logs() as records:
        async with client_of(app) as client:
            first = await client.get("/items/7")
            second = await client.get("/items/8")
    assert (first.status_code, first.json()) == (200, {"id": 7})
    assert (second.status_code, second.json()) == (200, {"id": 8})
    assert seen == [
        ("start", "/items/7", 0),
        ("end", "/items/{id:int}", 200),
        ("start", "/items/8", 0),
        ("end", "/items/{id:int}", 200),
    ]
    assert sum(r.get("event") == "http.observer_failed" for r in records) == 2


async def test_access_log_without_observers() -> None:
    app = make_app()
    app.access_log = True

    @app.get("/")
    async def index(request: Request) -> str:
        return "ok"

    with captured_logs() as records:
        async with client_of(app) as client:
            assert (await client.get("/")).text == "ok"
    access = [r for r in records if r.get("event") == "http.request"]
    assert [(r["method"], r["path"], r["status"]) for r in access] == [("GET", "/", 200)]


async def test_finish_only_observer_binds_the_server_and_reads_requests_in_flight() -> None:
    """An observer without ``request_started`` costs no start call; ``bind_server`` hands it the
    state whose ``active`` counts the requests being handled (here: the one asking)."""
    app = make_app()
    finished: list[tuple[str | None, int]] = []
    bound: list[ServerState] = []
    in_flight: list[int] = []

    class FinishOnly:
        def request_finished(
            self, request: Request, route: str | None, status: int, duration: float
        ) -> None:
            finished.append((route, status))

        def bind_server(self, state: ServerState) -> None:
            bound.append(state)

    app.add_observer(FinishOnly())  # type: ignore[arg-type]

    @app.get("/busy")
    async def busy(request: Request) -> str:
        in_flight.append(bound[0].active)
        return "ok"

    state = app.wire()
    assert state.on_start is None
    assert bound == [state]
    async with client_of(app) as client:
        assert (await client.get("/busy")).text == "ok"
        assert (await client.get("/nowhere")).status_code == 404
    assert in_flight == [1]
    assert bound[0].active == 0
    assert finished == [("/busy", 200), (None, 404)]


def test_inherited_no_op_start_is_not_called() -> None:
    class Subclassed(RequestObserver):
        def request_finished(
            self, request: Request, route: str | None, status: int, duration: float
        ) -> None:
            pass

    observer = Subclassed()
    state = ServerState(make_app().router, observers=[observer, observer])
    assert state.on_start is None


async def test_fast_path_calls_request_timed_of_a_single_observer() -> None:
    """A single observer with ``request_timed`` gets the fast path's requests there (the start
    time, no duration); a response that is not written at once (here: streamed) still goes to
    ``request_finished``. With the access log on, everything goes to ``request_finished``."""
    import time

    timed: list[tuple[str | None, str, int, float]] = []
    finished: list[tuple[str | None, int]] = []

    class Timing:
        def request_finished(
            self, request: Request, route: str | None, status: int, duration: float
        ) -> None:
            finished.append((route, status))

        def request_timed(
            self, request: Request, route: str | None, method: str, status: int, started: float
        ) -> None:
            timed.append((route, method, status, time.perf_counter() - started))

    app = make_app()
    app.add_observer(Timing())  # type: ignore[arg-type]

    @app.get("/fast")
    async def fast(request: Request) -> str:
        return "fast"

    @app.get("/streamed")
    async def streamed(request: Request) -> StreamingResponse:
        return StreamingResponse([b"a", b"b"])

    async with client_of(app) as client:
        assert (await client.get("/fast")).text == "fast"
        assert (await client.get("/streamed")).text == "ab"
    assert [t[:3] for t in timed] == [("/fast", "GET", 200)]
    assert 0 <= timed[0][3] < 5
    assert finished == [("/streamed", 200)]

    logged = make_app()
    logged.access_log = True
    logged.add_observer(Timing())  # type: ignore[arg-type]
    logged.add_route("/fast", fast, ["GET"])
    timed.clear()
    finished.clear()
    with captured_logs() as records:
        async with client_of(logged) as client:
            assert (await client.get("/fast")).text == "fast"
    assert [r["path"] for r in records if r.get("event") == "http.request"] == ["/fast"]
    assert timed == []
    assert finished == [("/fast", 200)]


_MARK: contextvars.ContextVar[str] = contextvars.ContextVar("test_observers_mark", default="-")


async def test_request_entered_wraps_chosen_requests_in_their_own_context() -> None:
    """The wrapper ``request_entered`` returns for a request runs in that request's own context
    (what it sets is seen by the handler, not by the next request), on top of what the observer
    preset for every request; it awaits the request's final response: the status sent, after
    exception handlers, for returned values, raised errors and handlers that wait. An observer
    with only this hook is not timed."""
    app = make_app()
    wrapped: list[tuple[str, int, str]] = []

    class Tracer:
        def bind_server(self, state: ServerState) -> None:
            state.preset(_MARK, "preset")

        def request_entered(self, request: Request) -> Any:
            return None if request.path == "/plain" else self.wrap

        async def wrap(self, request: Request, respond: Awaitable[Response]) -> Response:
            assert _MARK.get() == "preset"
            _MARK.set(request.path)
            await asyncio.sleep(0)  # a wrapper may wait, before and after
            response = await respond
            wrapped.append((request.path, response.status, _MARK.get()))
            return response

    app.add_observer(Tracer())  # type: ignore[arg-type]

    @app.get("/plain")
    async def plain(request: Request) -> str:
        return _MARK.get()

    @app.get("/value")
    async def value(request: Request) -> dict[str, str]:
        return {"mark": _MARK.get()}

    @app.get("/missing")
    async def missing(request: Request) -> str:
        raise HTTPException(404, "no such thing")

    @app.get("/broken")
    async def broken(request: Request) -> str:
        raise RuntimeError("handler bug")

    @app.get("/slow")
    async def slow(request: Request) -> str:
        await asyncio.sleep(0.01)
        return "slow"

    state = app.wire()
    assert not state.watched  # nothing times requests: no clock is read
    with captured_logs():
        async with client_of(app) as client:
            assert (await client.get("/plain")).text == "preset"
            assert (await client.get("/value")).json() == {"mark": "/value"}
            assert (await client.get("/missing")).status_code == 404
            assert (await client.get("/broken")).status_code == 500
            assert (await client.get("/slow")).text == "slow"
            assert (await client.get("/nowhere")).status_code == 404
            assert (await client.get("/plain")).text == "preset"  # nothing leaked
    assert _MARK.get() == "-"
    assert wrapped == [
        ("/value", 200, "/value"),
        ("/missing", 404, "/missing"),
        ("/broken", 500, "/broken"),
        ("/slow", 200, "/slow"),
        ("/nowhere", 404, "/nowhere"),
    ]


async def test_request_entered_of_several_observers_nest_and_a_failing_one_is_skipped() -> None:
    app = make_app()
    order: list[str] = []

    def layer(name: str) -> Any:
        async def wrap(request: Request, respond: Awaitable[Response]) -> Response:
            order.append(f"{name} in")
            response = await respond
            order.append(f"{name} out")
            return response

        return wrap

    class Outer:
        def request_entered(self, request: Request) -> Any:
            return layer("outer")

    class Skipping:
        def request_entered(self, request: Request) -> Any:
            return None

    class Inner:
        def request_entered(self, request: Request) -> Any:
            return layer("inner")

    class Failing:
        def request_entered(self, request: Request) -> Any:
            raise RuntimeError("hook bug")

    for observer in (Outer(), Failing(), Skipping(), Inner()):
        app.add_observer(observer)  # type: ignore[arg-type]

    @app.get("/")
    async def index(request: Request) -> str:
        order.append("handler")
        return "ok"

    with captured_logs() as records:
        async with client_of(app) as client:
            assert (await client.get("/")).text == "ok"
    assert order == ["outer in", "inner in", "handler", "inner out", "outer out"]
    assert [r["observer"] for r in records if r.get("event") == "http.observer_failed"] == [
        repr(app.wire().observers[1])
    ]


async def test_a_single_failing_request_entered_is_logged_and_the_request_served() -> None:
    app = make_app()

    class Failing:
        def request_entered(self, request: Request) -> Any:
            raise RuntimeError("hook bug")

    app.add_observer(Failing())  # type: ignore[arg-type]

    @app.get("/")
    async def index(request: Request) -> str:
        return "ok"

    with captured_logs() as records:
        async with client_of(app) as client:
            assert (await client.get("/")).text == "ok"
            assert (await client.get("/")).text == "ok"
    assert sum(r.get("event") == "http.observer_failed" for r in records) == 2


async def test_the_parser_keeps_the_traceparent_aside_per_request() -> None:
    """``request.traceparent`` is the raw W3C header of that request only (a keep-alive
    connection's next request without one reads None), also when built by hand."""
    app = make_app()
    seen: list[bytes | None] = []

    @app.post("/")
    async def index(request: Request) -> str:
        seen.append(request.traceparent)
        return "ok"

    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    async with client_of(app) as client:
        assert (await client.post("/", headers={"traceparent": parent}, content=b"x")).text == "ok"
        assert (await client.post("/")).text == "ok"
        assert (await client.post("/", headers={"TraceParent": parent})).text == "ok"
    assert seen == [parent.encode(), None, parent.encode()]
    assert Request("GET", "/", headers=[(b"traceparent", b"00-x")]).traceparent == b"00-x"
    assert Request("GET", "/").traceparent is None


async def test_a_wrapper_may_return_any_awaitable() -> None:
    """``wrap`` may return any awaitable (here: an object with only ``__await__``), not only a
    coroutine."""
    app = make_app()
    seen: list[int] = []

    class Tasking:
        def request_entered(self, request: Request) -> Any:
            def wrap(request: Request, respond: Awaitable[Response]) -> Awaitable[Response]:
                async def run() -> Response:
                    response = await respond
                    seen.append(response.status)
                    return response

                class Awaiting:
                    def __await__(self) -> Any:
                        return run().__await__()

                return Awaiting()  # type: ignore[return-value]

            return wrap

    app.add_observer(Tasking())  # type: ignore[arg-type]

    @app.get("/")
    async def index(request: Request) -> str:
        return "ok"

    async with client_of(app) as client:
        assert (await client.get("/")).text == "ok"
        assert (await client.get("/missing")).status_code == 404
    assert seen == [200, 404]


async def test_request_started_comes_before_the_hooks_and_its_failure_is_logged() -> None:
    """``request_started`` is called with the ``request_entered`` hooks, first, just before the
    handler starts; what it raises is logged and the request is served and finished anyway."""
    app = make_app()
    order: list[str] = []

    class Starting:
        def request_started(self, request: Request) -> None:
            order.append(f"start {request.path}")
            if request.path == "/bad":
                raise RuntimeError("observer bug")

        def request_finished(
            self, request: Request, route: str | None, status: int, duration: float
        ) -> None:
            order.append(f"finish {route} {status}")

    class Entering:
        def request_entered(self, request: Request) -> Any:
            order.append("entered")
            return None

    app.add_observer(Starting())  # type: ignore[arg-type]
    app.add_observer(Entering())  # type: ignore[arg-type]

    @app.get("/{name}")
    async def index(request: Request, name: str) -> str:
        order.append("handler")
        return name

    with captured_logs() as records:
        async with client_of(app) as client:
            assert (await client.get("/good")).text == "good"
            assert (await client.get("/bad")).text == "bad"
    assert order == [
        "start /good",
        "entered",
        "handler",
        "finish /{name} 200",
        "start /bad",
        "entered",
        "handler",
        "finish /{name} 200",
    ]
    assert [r.get("event") for r in records if r.get("event") == "http.observer_failed"] == [
        "http.observer_failed"
    ]


async def test_a_request_refused_at_the_concurrency_limit_is_started_and_finished() -> None:
    """The 503 of the concurrency limit is observed like any request: started (without a
    handler to enter), then finished with its status; a failing ``request_started`` is logged
    there too."""
    app = make_app(max_concurrency=1)
    release = asyncio.Event()
    seen: list[tuple[str, int]] = []

    class Counting:
        def request_started(self, request: Request) -> None:
            seen.append(("start", 0))
            if len(seen) > 1:
                raise RuntimeError("observer bug")

        def request_finished(
            self, request: Request, route: str | None, status: int, duration: float
        ) -> None:
            seen.append(("finish", status))

    app.add_observer(Counting())  # type: ignore[arg-type]

    @app.get("/hold")
    async def hold(request: Request) -> str:
        await release.wait()
        return "held"

    with captured_logs() as records:
        async with client_of(app) as client:
            first = asyncio.ensure_future(client.get("/hold"))
            while not seen:
                await asyncio.sleep(0.01)
            refused = await client.get("/hold")
            assert refused.status_code == 503
            release.set()
            assert (await first).text == "held"
    assert seen == [("start", 0), ("start", 0), ("finish", 503), ("finish", 200)]
    assert sum(r.get("event") == "http.observer_failed" for r in records) == 1
