"""``run_server(workers=2)`` serving a flowcoro-http app with observe (test_workers.py runs it).

argv: port. The supervisor prepares the shared metrics directory the way observe's
``flowcoro_net_workers_starting`` hook does, then forks two workers.
"""

from __future__ import annotations

import sys
from typing import Any

from flowcoro.net import run_server
from flowcoro.observe.plugin import flowcoro_net_workers_starting


async def build() -> Any:
    from flowcoro.http import App, JSONResponse

    app = App("workers", metrics_flush_interval=0.05, tracing="off")

    @app.get("/json")
    async def hello(request: Any) -> Any:
        return JSONResponse({"message": "Hello, World!"})

    await app.start()
    return app.protocol_factory()


if __name__ == "__main__":
    flowcoro_net_workers_starting(workers=2)
    sys.exit(run_server(build, workers=2, host="127.0.0.1", port=int(sys.argv[1]), loop="asyncio"))
