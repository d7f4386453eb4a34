"""FlowCoro demo, run by ``./tools/dev demo``: a web app on http://127.0.0.1:8080 (no services).

It first runs the order pipeline built from the core pieces — App, Channel, Pool, deadlines,
scopes, thread offload, pub/sub and the structured logger — and prints what it did; then it
serves the web demo (examples/demo/web.py) until Ctrl-C / SIGTERM, and drains gracefully.
Open http://127.0.0.1:8080/ for the page that links everything. ``--check`` serves, requests
each endpoint once, and exits (used by the tests).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pipeline import run_pipeline
from web import build_app

from flowcoro.core import configure_logging, get_logger, run
from flowcoro.core.runtime import wait_shutdown

log = get_logger("demo")


async def main(host: str, port: int, orders: int, check: bool) -> int:
    app = build_app()
    await app.start()
    try:
        totals = await run_pipeline(app, orders=orders)
        report = await app.health.run()
        print(
            f"demo: {int(totals['orders'])} orders priced, revenue {totals['revenue']:.2f}, "
            f"{int(totals['late'])} over their deadline; health {'ok' if report.ok else 'failing'}"
        )
        server = await app.serve(host, port)
        url = f"http://{host}:{server.port}/"
        print(f"demo: serving on {url} - open it in a browser (Ctrl-C to stop)", flush=True)
        try:
            if check:
                return await self_check(host, server.port)
            await wait_shutdown()
            await asyncio.Event().wait()  # cancelled by run() once the signal is handled
        except asyncio.CancelledError:
            pass
        finally:
            stats = await server.shutdown(5.0)
            print(f"demo: stopped ({stats.drained} drained, {stats.cut} cut)", flush=True)
        return 0
    finally:
        await app.stop()


async def self_check(host: str, port: int) -> int:
    """Request every endpoint once over a real socket; 0 when all answered as expected."""
    paths = [
        ("GET", "/", 200),
        ("POST", "/api/orders?count=50", 200),
        ("GET", "/api/runs", 200),
        ("GET", "/api/health", 200),
        ("GET", "/api/stream", 200),
        ("GET", "/api/hello/demo", 200),
        ("GET", "/api/orders?count=zero", 400),
        ("GET", "/api/upstream", 200),
        ("GET", "/static/about.html", 200),
        ("GET", "/static/style.css", 200),
        ("GET", "/static/../main.py", 404),
    ]
    failures = 0
    for method, path, expected in paths:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(
            f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode()
        )
        data = await reader.read()
        writer.close()
        status = int(data.split(b" ", 2)[1])
        ok = status == expected
        failures += not ok
        print(f"check: {method} {path} -> {status} {'ok' if ok else f'expected {expected}'}")
    return 1 if failures else 0


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--orders", type=int, default=200, help="orders for the first run")
    parser.add_argument("--log-format", choices=("console", "json"), default="console")
    parser.add_argument("--check", action="store_true", help="request each endpoint and exit")
    args = parser.parse_args(argv)
    configure_logging(format=args.log_format, level="info")
    return run(main(args.host, args.port, args.orders, args.check))


if __name__ == "__main__":
    sys.exit(cli())
