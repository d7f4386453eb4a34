"""HTTP client benchmark: flowcoro's `Client` against httpx.AsyncClient and aiohttp.ClientSession.

``./tools/dev bench client [--rounds N] [--requests N] [--concurrency N] [--clients a,b]``

A canned-response server (raw uvloop + httptools protocol, so the server is not the bottleneck)
runs in its own process on core 0 (``taskset -c 0``). Each client runs in a fresh process on
core 1 (``taskset -c 1``), on uvloop, and sends ``--requests`` GETs (default 10,000) from
``--concurrency`` tasks (default 50) over one client object with keep-alive, reading every body.
A warm-up of 500 requests precedes the timed part. Rounds are interleaved (every client once per
round); the table gives the median requests/s, the spread (min-max across rounds) and the ratio
to flowcoro. Peers are pip-installed into the running environment when missing.
``--serve PORT`` and ``--client NAME PORT N C`` are the internal modes of the subprocesses.
"""

from __future__ import annotations

import sys

from _common import free_port

if __name__ == "__main__":
    # Run as a script, this file's directory comes first on sys.path, where tools/bench/http.py
    # would shadow the standard library's ``http`` package.
    sys.path[:] = [p for p in sys.path if p and not p.rstrip("/").endswith("tools/bench")]

import argparse
import importlib.util
import os
import platform
import socket
import statistics
import subprocess
import time
from pathlib import Path

HERE = Path(__file__).resolve()
CLIENTS = ["flowcoro", "httpx", "aiohttp"]
# sniffio: without it httpcore retries a failing ``import sniffio`` on every request, which
# would make httpx look slower than it is in a normal environment.
PEER_PACKAGES = {"httpx": ["httpx", "sniffio"], "aiohttp": ["aiohttp"]}
BODY = b"Hello, World!"
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
    b"Date: Sat, 28 Nov 2026 00:00:00 GMT\r\nServer: bench\r\n\r\n%b" % (len(BODY), BODY)
)
WARMUP = 500


# -- server process ---------------------------------------------------------------------------


def serve(port: int) -> None:
    import asyncio

    import httptools
    import uvloop

    class Canned(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport: asyncio.Transport = transport  # type: ignore[assignment]
            self.parser = httptools.HttpRequestParser(self)

        def on_message_complete(self) -> None:
            self.transport.write(RESPONSE)

        def data_received(self, data: bytes) -> None:
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserError:
                self.transport.close()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Canned, "127.0.0.1", port, backlog=4096)
        async with server:
            await server.serve_forever()

    uvloop.run(main())


# -- client processes -------------------------------------------------------------------------


async def _drive(get: object, url: str, total: int, concurrency: int) -> None:
    import asyncio

    remaining = [total]

    async def worker() -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            await get(url)  # type: ignore[operator]

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def run_client(name: str, port: int, total: int, concurrency: int) -> None:
    import uvloop

    url = f"http://127.0.0.1:{port}/"

    async def main() -> float:
        if name == "flowcoro":
            from flowcoro.http.client import Client, Limits

            async with Client(limits=Limits(max_connections_per_host=concurrency)) as client:

                async def get(u: str) -> None:
                    response = await client.get(u)
                    _check(response.status_code, response.content)

                return await _timed(get, url, total, concurrency)
        if name == "httpx":
            import httpx

            limits = httpx.Limits(
                max_connections=concurrency, max_keepalive_connections=concurrency
            )
            async with httpx.AsyncClient(limits=limits) as hclient:

                async def get(u: str) -> None:
                    response = await hclient.get(u)
                    _check(response.status_code, response.content)

                return await _timed(get, url, total, concurrency)
        if name == "aiohttp":
            import aiohttp

            connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
            async with aiohttp.ClientSession(connector=connector) as session:

                async def get(u: str) -> None:
                    async with session.get(u) as response:
                        body = await response.read()
                        _check(response.status, body)

                return await _timed(get, url, total, concurrency)
        raise SystemExit(f"unknown client {name!r}")

    print(f"RPS {uvloop.run(main()):.1f}", flush=True)


def _check(status: int, body: bytes) -> None:
    if status != 200 or body != BODY:
        raise RuntimeError(f"unexpected response {status} {body!r}")


async def _timed(get: object, url: str, total: int, concurrency: int) -> float:
    await _drive(get, url, WARMUP, concurrency)
    started = time.perf_counter()
    await _drive(get, url, total, concurrency)
    return total / (time.perf_counter() - started)


# -- orchestration ----------------------------------------------------------------------------


def _ensure_peers(clients: list[str]) -> None:
    missing = [
        package
        for c in clients
        for package in PEER_PACKAGES.get(c, [])
        if importlib.util.find_spec(package) is None
    ]
    if missing:
        print(f"installing peers: {' '.join(missing)}", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *missing], check=True)


def _wait_ready(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the benchmark server exited at start")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the benchmark server did not start")


def _taskset(core: str) -> list[str]:
    return ["taskset", "-c", core] if _has_taskset() else []


def _has_taskset() -> bool:
    from shutil import which

    return which("taskset") is not None and (os.cpu_count() or 1) >= 2


def _one(name: str, port: int, total: int, concurrency: int) -> float:
    cmd = [*_taskset("1"), sys.executable, str(HERE), "--client", name, str(port)]
    cmd += [str(total), str(concurrency)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600).stdout
    for line in out.splitlines():
        if line.startswith("RPS "):
            return float(line.split()[1])
    raise RuntimeError(f"client {name} printed no result: {out!r}")


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    python = platform.python_version()
    return f"{cpu}, {os.cpu_count()} cores, Linux {platform.release()}, Python {python}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench client")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--clients", default=",".join(CLIENTS))
    args = parser.parse_args(argv)
    clients = [c for c in args.clients.split(",") if c]
    for name in clients:
        if name not in CLIENTS:
            parser.error(f"unknown client {name!r}; choose from {', '.join(CLIENTS)}")
    _ensure_peers(clients)
    port = free_port()
    server = subprocess.Popen([*_taskset("0"), sys.executable, str(HERE), "--serve", str(port)])
    results: dict[str, list[float]] = {c: [] for c in clients}
    try:
        _wait_ready(port, server)
        for rnd in range(args.rounds):
            order = clients if rnd % 2 == 0 else list(reversed(clients))
            for name in order:
                rps = _one(name, port, args.requests, args.concurrency)
                results[name].append(rps)
                print(f"round {rnd + 1}: {name:9s} {rps:10.0f} req/s", flush=True)
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    base = statistics.median(results[clients[0]])
    print()
    print(
        f"{args.requests} GETs, concurrency {args.concurrency}, {args.rounds} interleaved rounds; "
        "server raw uvloop+httptools on core 0, client on core 1, uvloop"
    )
    print(f"machine: {_machine()}")
    print()
    print(f"| client | median req/s | spread (min-max) | ratio vs {clients[0]} |")
    print("|---|---:|---:|---:|")
    for name in clients:
        runs = results[name]
        median = statistics.median(runs)
        print(
            f"| {name} | {median:,.0f} | {min(runs):,.0f}-{max(runs):,.0f} | {median / base:.2f} |"
        )
    if "flowcoro" in results:
        ours = statistics.median(results["flowcoro"])
        for peer in ("httpx", "aiohttp"):
            if peer in results:
                print(f"flowcoro / {peer}: {ours / statistics.median(results[peer]):.2f}x")
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]))
    elif len(sys.argv) >= 6 and sys.argv[1] == "--client":
        run_client(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    else:
        sys.exit(main(sys.argv[1:]))
