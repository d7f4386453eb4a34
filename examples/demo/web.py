"""The web part of the demo: an HTTP app over the core pieces (``build_app()``).

Pages and endpoints (see the README for what to open):

- ``GET /`` — an HTML page linking everything below.
- ``POST /api/orders?count=N`` (also ``GET``) — runs the order pipeline (Channel, Pool,
  deadlines, scope, thread offload, pub/sub) for N orders and returns its totals as JSON.
- ``GET /api/health`` — the app's health report (503 while draining).
- ``GET /api/stream`` — a streamed response: one line per tick, flow-controlled.
- ``GET /api/hello/{name}`` — a typed path parameter and the request id in the log context.
- ``POST /api/echo`` — the body back (streamed in, bounded by the body limit).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from pipeline import run_pipeline

from flowcoro.core import bind_context, get_logger
from flowcoro.http import (
    App,
    CallNext,
    HTMLResponse,
    HTTPException,
    JSONResponse,
    Request,
    Response,
    StreamingResponse,
)

log = get_logger("demo.web")

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>FlowCoro demo</title>
<style>body{font:16px system-ui;margin:2em auto;max-width:46em}code{background:#eee}</style>
</head><body>
<h1>FlowCoro demo</h1>
<p>An HTTP app (flowcoro-http) over the core pieces (flowcoro-core).</p>
<ul>
<li><a href="/api/orders?count=200">/api/orders?count=200</a> &mdash; run the order pipeline
  (bounded Channel &rarr; 4 workers in a scope &rarr; Pool + deadlines &rarr; thread offload
  &rarr; pub/sub aggregator) and see its totals</li>
<li><a href="/api/health">/api/health</a> &mdash; health report (turns 503 while draining)</li>
<li><a href="/api/stream">/api/stream</a> &mdash; a streamed response, one line per tick</li>
<li><a href="/api/hello/world">/api/hello/world</a> &mdash; path parameters, request ids</li>
<li><code>curl -d hello http://127.0.0.1:8080/api/echo</code> &mdash; echo a body</li>
</ul>
<p>Runs so far: {runs}. Last totals: <code>{last}</code></p>
</body></html>
"""


def build_app(**settings: Any) -> App:
    app = App("demo", **settings)
    history: list[dict[str, float]] = []

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
        log.info("demo.orders", count=count)
        return JSONResponse(
            {
                "orders": int(totals["orders"]),
                "revenue": round(totals["revenue"], 2),
                "late": int(totals["late"]),
                "seconds": round(time.perf_counter() - started, 3),
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

    return app
