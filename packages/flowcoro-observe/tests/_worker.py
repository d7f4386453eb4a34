"""A stand-in for a forked server worker (run as a subprocess by test_multiprocess.py).

argv: metrics_dir requests user_increments. It records that many requests and user-counter
increments, serves its endpoints on a free port (printed as ``ready <pid> <port>``), then obeys
stdin: ``more N`` records N more requests and flushes; ``stop`` stops cleanly; EOF just exits.
"""

from __future__ import annotations

import asyncio
import sys

import prometheus_client

from flowcoro.observe import MetricsServer, Observe


class _Request:
    method = "GET"


async def main(directory: str, requests: int, user: int) -> None:
    observe = Observe(metrics_dir=directory, metrics_flush_interval=0.05)
    await observe.start(None)
    server = MetricsServer(observe, port=0)
    await server.start()
    jobs = prometheus_client.Counter("test_user_jobs", "User-defined counter", ["kind"])
    jobs.labels("batch").inc(user)

    def record(n: int) -> None:
        for _ in range(n):
            observe.http.request_finished(_Request(), "/json", 200, 0.002)

    record(requests)
    assert observe.store is not None
    observe.store.write(observe.collect())
    print(f"ready {observe.store.pid} {server.port}", flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return
        command, *args = line.split()
        if command == "more":
            record(int(args[0]))
            observe.store.write(observe.collect())
            print("done", flush=True)
        elif command == "stop":
            await server.stop()
            await observe.stop()
            print("stopped", flush=True)
            return


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
