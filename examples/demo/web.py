"""The web part of the demo: an HTTP app over the core pieces (``build_app()``).

Pages and endpoints (see the README for what to open):

- ``GET /`` — an HTML page linking everything below.
- ``POST /api/orders?count=N`` (also ``GET``) — runs the order pipeline (Channel, Pool,
  deadlines, scope, thread offload, pub/sub) for N orders and returns its totals as JSON.
- ``GET /api/health`` — the app's health report (503 while draining).
- ``GET /api/stream`` — a streamed response: one line per tick, flow-controlled.
- ``GET /api/hello/{name}`` — a typed path parameter and the request id in the log context.
- ``POST /api/echo`` — the body back (streamed in, bounded by the body limit).
- ``GET /api/runs`` — the pipeline runs recorded in the database (flowcoro-db): SQLite in a
  temporary file by default, PostgreSQL (or MySQL) when ``FLOWCORO_DB_URL`` is set.
- ``GET /api/upstream`` — an outbound call with `flowcoro.http.Client`: the app asks a service
  (itself, on loopback) for its health, as one service calling another would.
- ``/static/...`` — static files from ``examples/demo/static`` (``app.static``).
- ``/static/chat.html`` and ``ws://.../ws/chat/{room}`` — a chat with rooms: a WebSocket route
  and a `Hub` over the app's pub/sub broker (Redis across workers when configured).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from pipeline import run_pipeline

from flowcoro.core import bind_context, get_logger
from flowcoro.db import Database
from flowcoro.http import (
    App,
    CallNext,
    Client,
    HTMLResponse,
    HTTPException,
    Hub,
    JSONResponse,
    Request,
    Response,
    StreamingResponse,
    WebSocket,
)

log = get_logger("demo.web")

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>FlowCoro demo</title>
<link rel="stylesheet" href="/static/style.css">
</head><body>
<h1>FlowCoro demo</h1>
<p>An HTTP app (flowcoro-http) over the core pieces (flowcoro-core).</p>
<ul>
<li><a href="/api/orders?count=200">/api/orders?count=200</a> &mdash; run the order pipeline
  (bounded Channel &rarr; 4 workers in a scope &rarr; Pool + deadlines &rarr; thread offload
  &rarr; pub/sub aggregator) and see its totals</li>
<li><a href="/api/runs">/api/runs</a> &mdash; the runs recorded in the database (SQLite by
  default; PostgreSQL when <code>FLOWCORO_DB_URL</code> is set)</li>
<li><a href="/api/health">/api/health</a> &mdash; health report (turns 503 while draining)</li>
<li><a href="/api/stream">/api/stream</a> &mdash; a streamed response, one line per tick</li>
<li><a href="/api/hello/world">/api/hello/world</a> &mdash; path parameters, request ids</li>
<li><code>curl -d hello http://127.0.0.1:8080/api/echo</code> &mdash; echo a body</li>
<li><a href="/api/upstream">/api/upstream</a> &mdash; an outbound HTTP call (flowcoro.http.Client)
  to this server's health endpoint, with its latency</li>
<li><a href="/static/about.html">/static/about.html</a> &mdash; a static page</li>
<li><a href="/static/chat.html">/static/chat.html</a> &mdash; a WebSocket chat with rooms</li>
</ul>
<p>Runs so far: {runs}. Last totals: <code>{last}</code></p>
</body></html>
"""


def build_app(**settings: Any) -> App:
    app = App("demo", **settings)
    history: list[dict[str, float]] = []
    app.static("/static", Path(__file__).resolve().parent / "static")
    # One pooled client for the app's outbound calls, opened and closed with the app.
    client = Client(timeout=2.0)
    # The database is a component: opened before serving, closed after, its health check in
    # app.health. FLOWCORO_DB_URL (the db_url setting) picks the database.
    default_db = f"sqlite:///{Path(tempfile.gettempdir()) / 'flowcoro-demo.db'}"
    configured = "db_url" in app.settings and app.settings.source("db_url") != "default"
    db = Database(app.settings["db_url"] if configured else default_db, name="demo-db")
    app.add_component(db)

    @app.on_startup
    async def schema() -> None:
        await db.execute(
            "CREATE TABLE IF NOT EXISTS demo_runs (orders INTEGER NOT NULL,"
            " revenue DOUBLE PRECISION NOT NULL, late INTEGER NOT NULL,"
            " at_unix DOUBLE PRECISION NOT NULL)"
        )

    @app.on_shutdown
    async def close_client() -> None:
        await client.aclose()

    @app.use
    async def request_context(request: Request, call_next: CallNext) -> Response:
        # Every log record of this request carries its id; the response says how long it took.
        started = time.perf_counter()
        with bind_context(request_id=request.id):
            response = await call_next(request)
        response.set_header("x-response-time", f"{(time.perf_counter() - started) * 1000:.2f}ms")
        return response

    @app.get("/")
    async def index(request: Request) -> Response:
        last = history[-1] if history else {}
        return HTMLResponse(PAGE.replace("{runs}", str(len(history))).replace("{last}", str(last)))

    @app.route("/api/orders", methods=["GET", "POST"])
    async def orders(request: Request) -> Response:
        try:
            count = int(request.query.get("count", "200"))
        except ValueError:
            raise HTTPException(400, "count must be an integer") from None
        if not 1 <= count <= 5000:
            raise HTTPException(400, "count must be between 1 and 5000")
        started = time.perf_counter()
        totals = await run_pipeline(app, orders=count)
        history.append(totals)
        del history[:-20]
        await db.execute(
            "INSERT INTO demo_runs (orders, revenue, late, at_unix) VALUES (?, ?, ?, ?)",
            int(totals["orders"]),
            round(totals["revenue"], 2),
            int(totals["late"]),
            time.time(),
        )
        log.info("demo.orders", count=count)
        return JSONResponse(
            {
                "orders": int(totals["orders"]),
                "revenue": round(totals["revenue"], 2),
                "late": int(totals["late"]),
                "seconds": round(time.perf_counter() - started, 3),
            }
        )

    @app.get("/api/runs")
    async def runs(request: Request) -> Response:
        summary = await db.fetchrow(
            "SELECT count(*) AS runs, coalesce(sum(orders), 0) AS orders FROM demo_runs"
        )
        last = await db.fetch(
            "SELECT orders, revenue, late FROM demo_runs ORDER BY at_unix DESC LIMIT 5"
        )
        return JSONResponse(
            {
                "database": db.url.scheme,
                "runs": int(summary["runs"]) if summary else 0,
                "orders": int(summary["orders"]) if summary else 0,
                "last": [dict(row) for row in last],
            }
        )

    @app.get("/api/health")
    async def health(request: Request) -> Response:
        report = await app.health.run()
        body = {
            "ok": report.ok and not app.draining,
            "draining": app.draining,
            "checks": [
                {"name": c.name, "ok": c.ok, "latency": round(c.latency, 4), "detail": c.detail}
                for c in report.checks
            ],
        }
        return JSONResponse(body, status=200 if body["ok"] else 503)

    @app.get("/api/stream")
    async def stream(request: Request) -> Response:
        async def ticks() -> Any:
            for i in range(10):
                yield f"tick {i} at {time.strftime('%H:%M:%S')}\n"
                await asyncio.sleep(0.2)

        return StreamingResponse(ticks(), media_type="text/plain; charset=utf-8")

    @app.get("/api/hello/{name}")
    async def hello(request: Request, name: str) -> dict[str, str]:
        log.info("demo.hello", name=name)
        return {"hello": name, "request_id": request.id}

    @app.post("/api/echo")
    async def echo(request: Request) -> Response:
        return Response(
            await request.body(), media_type=request.headers.get("content-type") or "text/plain"
        )

    @app.get("/api/upstream")
    async def upstream(request: Request) -> Response:
        # The "upstream service" is this very server, reached the way the browser reached it;
        # only loopback addresses are called.
        host = request.headers.get("host") or ""
        if host.rpartition(":")[0] not in ("127.0.0.1", "localhost", "[::1]"):
            raise HTTPException(400, "upstream demo calls loopback addresses only")
        started = time.perf_counter()
        reply = await client.get(f"http://{host}/api/health")
        return JSONResponse(
            {
                "upstream": f"http://{host}/api/health",
                "status": reply.status_code,
                "ok": reply.json()["ok"],
                "ms": round((time.perf_counter() - started) * 1000, 2),
            }
        )

    hubs: list[Hub] = []

    @app.on_startup
    async def start_chat() -> None:
        hub = Hub(app.pubsub(), prefix="demo.chat.", queue_size=64)
        await hub.start()
        hubs.append(hub)

    @app.on_shutdown
    async def stop_chat() -> None:
        for hub in hubs:
            await hub.aclose()

    @app.websocket("/ws/chat/{room}", max_size=4096)
    async def chat(ws: WebSocket, room: str) -> None:
        hub = hubs[0]
        async with hub.connect(ws):
            await hub.join(ws, room)
            async for message in ws:
                if isinstance(message, str) and message.strip():
                    await hub.publish(room, message[:500])

    return app
