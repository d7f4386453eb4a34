"""Request observers on the protocol's fast path: one observer is called directly (no composed
wrapper), and its failures are logged without affecting the response."""

from __future__ import annotations

import httpx
from _http_helpers import captured_logs, make_app, serving

from flowcoro.http import Request, StreamingResponse
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
        async with (
            serving(app) as (_, port),
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
        ):
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
        async with (
            serving(app) as (_, port),
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
        ):
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
    async with (
        serving(app) as (_, port),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
    ):
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

    async with (
        serving(app) as (_, port),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
    ):
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
        async with (
            serving(logged) as (_, port),
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
        ):
            assert (await client.get("/fast")).text == "fast"
    assert [r["path"] for r in records if r.get("event") == "http.request"] == ["/fast"]
    assert timed == []
    assert finished == [("/fast", 200)]
