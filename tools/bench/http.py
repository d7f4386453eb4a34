"""HTTP server benchmark: flowcoro-http against the raw httptools protocol and its peers.

``./tools/dev bench http [--rounds=N] [--duration=S] [--servers=a,b] [--no-c10k] [--micro]
[--instructions]`` (flags with values in the ``--flag=value`` form: tools/bench/run.py takes
bare words for benchmark names; ``--micro`` measures the in-process CPU time per request only,
``--instructions`` the in-process instructions per request, counted by callgrind)

Every server runs in the same run, one process on core 0 (``taskset -c 0``), wrk on core 1
(``taskset -c 1 wrk -t1 -c100``), routes ``GET /`` (text) and ``GET /json``. Rounds are
interleaved (every server once per round); the table gives the median requests/s, the spread
(min-max across rounds), the median p99 latency, the server's CPU time per request (user +
system, from /proc) and two ratios: flowcoro's req/s over the server's, and the same by CPU per
request (the server's CPU per request over flowcoro's: what each would serve on a core of its own,
the steadier figure on a shared machine). Then a 10,000-connection
keep-alive run of flowcoro alone (wrk ``-c10000``, file limits raised) checks for errors and p99.

Peers are installed into the running virtual environment when missing (granian, uvicorn,
starlette, sanic, aiohttp), and wrk with apt-get. ``--serve NAME PORT`` is the internal mode each
server subprocess runs in.
"""

from __future__ import annotations

import sys

from _common import Sink, callgrind_instructions, ensure_modules, ensure_wrk, free_port

if __name__ == "__main__":
    # Run as a script, this file's directory comes first on sys.path, where this very file would
    # shadow the standard library's ``http`` package.
    sys.path[:] = [p for p in sys.path if p and not p.rstrip("/").endswith("tools/bench")]

import argparse
import os
import re
import resource
import socket
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve()
TEXT = b"Hello, World!"
JSON = b'{"message":"Hello, World!"}'
SERVERS = ["flowcoro", "raw", "granian", "uvicorn", "starlette", "sanic", "aiohttp"]
PEER_PACKAGES = {
    "granian": ["granian"],
    "uvicorn": ["uvicorn", "httptools"],
    "starlette": ["uvicorn", "starlette"],
    "sanic": ["sanic"],
    "aiohttp": ["aiohttp"],
}


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else min(65536, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


# -- servers (each runs in its own process) --------------------------------------------------


def serve_flowcoro(port: int) -> None:
    import asyncio
    import gc

    import uvloop

    sys.path.insert(0, str(ROOT))
    from examples.hello import app
    from flowcoro.net import Limits, start_server

    async def main() -> None:
        await app.start()
        factory = app.protocol_factory()
        gc.collect()
        gc.freeze()  # as `flowcoro serve` does
        server = await start_server(
            factory,
            host="127.0.0.1",
            port=port,
            backlog=16384,
            limits=Limits(max_connections=20_000),
        )
        try:
            await asyncio.Event().wait()
        finally:
            await server.shutdown(1.0)

    uvloop.run(main())


def serve_raw(port: int) -> None:
    """The ceiling: a bare uvloop + httptools protocol writing canned responses."""
    import asyncio

    import httptools
    import uvloop

    text = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 13\r\n\r\n" + TEXT
    js = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 27\r\n\r\n" + JSON

    class Raw(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            self.parser = httptools.HttpRequestParser(self)
            self.url = b""

        def on_url(self, url: bytes) -> None:
            self.url = url

        def on_message_complete(self) -> None:
            self.transport.write(js if self.url == b"/json" else text)  # type: ignore[attr-defined]

        def data_received(self, data: bytes) -> None:
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserError:
                self.transport.close()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Raw, "127.0.0.1", port, backlog=16384)
        await server.serve_forever()

    uvloop.run(main())


def serve_granian(port: int) -> None:
    os.execv(
        sys.executable,
        [
            sys.executable,
            "-m",
            "granian",
            "--interface",
            "asgi",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--loop",
            "uvloop",
            "--no-ws",
            "--log-level",
            "warning",
            "--backlog",
            "16384",
            "bench_http_apps:raw_asgi",
        ],
    )


def serve_uvicorn(port: int, app: str) -> None:
    import uvicorn

    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        backlog=16384,
        lifespan="off",
    )


def serve_sanic(port: int) -> None:
    from sanic import Sanic
    from sanic.response import json, text

    app = Sanic("bench")
    app.config.ACCESS_LOG = False
    app.config.BACKLOG = 16384

    @app.get("/")
    async def hello(request: object) -> object:
        return text("Hello, World!")

    @app.get("/json")
    async def hello_json(request: object) -> object:
        return json({"message": "Hello, World!"})

    app.run(host="127.0.0.1", port=port, single_process=True, access_log=False, motd=False)


def serve_aiohttp(port: int) -> None:
    import asyncio

    import uvloop
    from aiohttp import web

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="Hello, World!")

    async def hello_json(request: web.Request) -> web.Response:
        return web.json_response({"message": "Hello, World!"})

    app = web.Application()
    app.router.add_get("/", hello)
    app.router.add_get("/json", hello_json)
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, backlog=16384)


def hold(port: int, count: int, seconds: float) -> None:
    """Open ``count`` keep-alive connections, make one request on each, then keep every one
    alive with a request every 2 s (inside the server's 5 s keep-alive timeout) for ``seconds``;
    print ``held=<open at the end> errors=<failed requests or connections>``."""
    import asyncio

    import uvloop

    _raise_nofile()
    request = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
    errors = 0
    held = 0

    async def one(i: int, stop: float) -> None:
        nonlocal errors, held
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            errors += 1
            return
        held += 1
        loop = asyncio.get_running_loop()
        try:
            await asyncio.sleep((i % 200) / 100)  # stagger the keep-alive requests
            while True:
                writer.write(request)
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                if not head.startswith(b"HTTP/1.1 200"):
                    errors += 1
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                if loop.time() >= stop:
                    break
                await asyncio.sleep(2.0)
        except (TimeoutError, OSError, asyncio.IncompleteReadError):
            errors += 1
            held -= 1
        finally:
            writer.close()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = loop.time() + seconds
        tasks = []
        for i in range(count):
            tasks.append(asyncio.ensure_future(one(i, stop)))
            if i % 500 == 499:
                await asyncio.sleep(0.05)  # do not overflow the listen backlog
        await asyncio.gather(*tasks)

    uvloop.run(main())
    print(f"held={held} errors={errors}", flush=True)


def micro(batches: int = 25, batch: int = 5000, count: tuple[str, int] | None = None) -> None:
    """In-process cost of one request, without sockets: request bytes fed to a flowcoro
    protocol's ``data_received`` (one request per call, as wrk sends them) with a transport that
    only records writes, on uvloop, timed in CPU time (best of ``batches``). With and without a
    no-op request observer. With ``count=(path, n)``: feed ``n`` requests for ``path`` and
    nothing else (what `instructions` runs under callgrind)."""
    import asyncio
    import gc

    import uvloop

    sys.path.insert(0, str(ROOT))
    from examples.hello import app
    from flowcoro.http import App
    from flowcoro.http.protocol import HTTPProtocol

    class Observer:
        def request_started(self, request: object) -> None:
            pass

        def request_finished(self, *args: object) -> None:
            pass

    def connected(target: App, path: str) -> tuple[Callable[[bytes], None], bytes]:
        """A connection's ``data_received`` and the request bytes to feed it."""
        state = target.wire()
        # Measure requests, not reconnections (a one-digit int, as the default: the same compare).
        state.max_keepalive_requests = 10**9
        proto = HTTPProtocol(state)
        proto.connection_made(Sink())
        data = b"GET " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
        return proto.data_received, data

    def one(target: App, path: str) -> float:
        feed, data = connected(target, path)
        for _ in range(2000):
            feed(data)
        best = float("inf")
        for _ in range(batches):
            t0 = time.process_time()
            for _ in range(batch):
                feed(data)
            best = min(best, time.process_time() - t0)
        return best / batch * 1e6

    def fed(path: str, n: int) -> None:
        feed, data = connected(app, path)
        for _ in range(n):
            feed(data)

    async def main() -> None:
        if count is not None:
            done = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_soon(lambda: done.set_result(fed(*count)))
            await done
            return
        observed = App("observed")
        for route in app.router.routes():
            observed.add_route(route.path, route.handler, route.methods)
        observed.add_observer(Observer())
        loop = asyncio.get_running_loop()
        for path in ("/", "/json"):
            for label, target in (("no observer", app), ("no-op observer", observed)):
                done = loop.create_future()
                # Fed from a plain callback, as the event loop calls data_received.
                loop.call_soon(lambda t=target, d=done, p=path: d.set_result(one(t, p)))
                print(f"GET {path:6s} {label:15s} {await done:6.2f} us/request", flush=True)

    gc.collect()
    gc.freeze()
    uvloop.run(main())


def instructions() -> None:
    """Instructions per in-process request, counted by ``valgrind --tool=callgrind``: the same
    for the same code whatever else the machine is doing, so small changes can be compared on a
    busy machine. Each path is fed 1,000 and 6,000 requests in two runs (hash seed fixed); the
    difference over 5,000 leaves out start-up."""
    env = {"FLOWCORO_PLUGINS": "http,net", "PYTHONPATH": str(ROOT)}

    def collected(path: str, n: int) -> int:
        return callgrind_instructions("http", [str(HERE), f"--count-run={path},{n}"], env)

    for path in ("/", "/json"):
        per = (collected(path, 6000) - collected(path, 1000)) / 5000
        print(f"GET {path:6s} {per:,.0f} instructions/request (in process)", flush=True)


def serve(name: str, port: int) -> None:
    _raise_nofile()
    if name == "flowcoro":
        serve_flowcoro(port)
    elif name == "raw":
        serve_raw(port)
    elif name == "granian":
        serve_granian(port)
    elif name == "uvicorn":
        serve_uvicorn(port, "bench_http_apps:raw_asgi")
    elif name == "starlette":
        serve_uvicorn(port, "bench_http_apps:starlette")
    elif name == "sanic":
        serve_sanic(port)
    elif name == "aiohttp":
        serve_aiohttp(port)
    else:
        raise SystemExit(f"unknown server {name!r}")


# -- the driver ---------------------------------------------------------------------------


def _ensure_tools(servers: list[str]) -> list[str]:
    ensure_wrk("http")
    usable = []
    for name in servers:
        packages = PEER_PACKAGES.get(name, [])
        if not ensure_modules(packages, why=name):
            print(f"  skipping {name}: could not install {packages}")
            continue
        usable.append(name)
    return usable


def _wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if s.recv(100).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("server did not become ready")


class Running:
    def __init__(self, name: str) -> None:
        self.name = name
        self.port = free_port()
        env = dict(
            os.environ,
            FLOWCORO_PLUGINS="http,net",
            PYTHONPATH=f"{HERE.parent / '_http_peers'}{os.pathsep}{ROOT}",
        )
        self.proc = subprocess.Popen(
            ["taskset", "-c", "0", sys.executable, str(HERE), "--serve", name, str(self.port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            _wait_ready(self.port, self.proc)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time used so far by the process and its descendants (granian runs
    its worker as a child), from /proc; 0.0 where there is no /proc."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(entry.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    tree, total = {pid}, 0.0
    changed = True
    while changed:
        changed = False
        for child, (parent, _) in stats.items():
            if parent in tree and child not in tree:
                tree.add(child)
                changed = True
    for member in tree:
        total += stats.get(member, (0, 0))[1]
    return total / os.sysconf("SC_CLK_TCK")


def wrk(
    port: int, path: str, conns: int, duration: float, threads: int = 1, pid: int | None = None
) -> dict[str, float]:
    """One wrk run; with ``pid``, also the server's CPU time per request (user + system, in
    microseconds): a steadier measure than requests/s on a shared machine, since time the
    server spends waiting for the CPU is not counted."""
    cpu0 = _cpu_seconds(pid) if pid else 0.0
    cmd = (
        f"ulimit -n $(ulimit -Hn); taskset -c 1 wrk -t{threads} -c{conns} -d{duration:g}s "
        f"--latency --timeout 5s http://127.0.0.1:{port}{path}"
    )
    out = subprocess.run(
        ["bash", "-c", cmd], capture_output=True, text=True, timeout=duration + 60
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    errors = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(x) for x in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors += int(m.group(1))
    cpu = _cpu_seconds(pid) - cpu0 if pid else 0.0
    done = re.search(r"(\d+) requests in", out)
    count = int(done.group(1)) if done else 0
    return {
        "cpu_us": cpu / count * 1e6 if count and pid else float("nan"),
        "rps": rps,
        "p99_ms": float(p99.group(1)) * _UNITS[p99.group(2)] if p99 else float("nan"),
        "errors": errors,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench http")
    parser.add_argument("--serve", nargs=2, metavar=("NAME", "PORT"))
    parser.add_argument("--hold", nargs=3, metavar=("PORT", "COUNT", "SECONDS"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--paths", default="/,/json")
    parser.add_argument("--no-c10k", action="store_true")
    parser.add_argument("--micro", action="store_true", help="in-process cost per request only")
    parser.add_argument("--micro-run", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--instructions", action="store_true", help="instructions per in-process request"
    )
    parser.add_argument("--count-run", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--c10k-duration", type=float, default=15.0)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return 0
    if args.micro_run:
        micro()
        return 0
    if args.count_run:
        path, n = args.count_run.rsplit(",", 1)
        micro(count=(path, int(n)))
        return 0
    if args.instructions:
        instructions()
        return 0
    if args.micro:
        # In its own process (run as a script: this module must not shadow the stdlib's http).
        env = dict(os.environ, FLOWCORO_PLUGINS="http,net", PYTHONPATH=str(ROOT))
        cmd = ["taskset", "-c", "0", sys.executable, str(HERE), "--micro-run"]
        return subprocess.run(cmd, env=env, check=False).returncode
    if args.hold:
        hold(int(args.hold[0]), int(args.hold[1]), float(args.hold[2]))
        return 0
    _raise_nofile()
    servers = _ensure_tools([s for s in args.servers.split(",") if s])
    paths = args.paths.split(",")
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    for rnd in range(args.rounds):
        order = servers[rnd % len(servers) :] + servers[: rnd % len(servers)]
        for name in order:
            try:
                running = Running(name)
            except Exception as exc:
                print(f"round {rnd + 1}: {name} failed to start: {exc}", flush=True)
                continue
            try:
                for path in paths:
                    wrk(running.port, path, 100, 1.0)  # warm-up
                    res = wrk(running.port, path, 100, args.duration, pid=running.proc.pid)
                    results.setdefault((name, path), []).append(res)
                    print(
                        f"round {rnd + 1} {name:10s} {path:6s} {res['rps']:>10.0f} req/s "
                        f"p99 {res['p99_ms']:.2f} ms cpu {res['cpu_us']:.2f} us/req "
                        f"errors {res['errors']:.0f}",
                        flush=True,
                    )
            finally:
                running.stop()
    print()
    print(f"machine: {_machine()}")
    print(
        f"command: ./tools/dev bench http --rounds {args.rounds} --duration {args.duration:g} "
        f"(server taskset -c 0, wrk -t1 -c100 taskset -c 1)"
    )
    print()
    for path in paths:
        base = _median(results.get(("flowcoro", path), []), "rps")
        base_cpu = _median(results.get(("flowcoro", path), []), "cpu_us")
        print(f"GET {path}")
        print(
            "| server | req/s (median) | spread (min-max) | p99 ms (median) "
            "| server CPU us/req (median) | flowcoro / server | by CPU per request |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|")
        for name in servers:
            runs = results.get((name, path))
            if not runs:
                continue
            med = _median(runs, "rps")
            lo, hi = min(r["rps"] for r in runs), max(r["rps"] for r in runs)
            p99 = _median(runs, "p99_ms")
            cpu = _median(runs, "cpu_us")
            ratio = base / med if med else float("nan")
            # Capacity: requests a fully busy core would serve, 1 / CPU per request. On a shared
            # machine it moves far less than req/s (time spent waiting for the CPU is not in it).
            by_cpu = cpu / base_cpu if base_cpu else float("nan")
            same = name == "flowcoro"
            print(
                f"| {name} | {med:,.0f} | {lo:,.0f}-{hi:,.0f} | {p99:.2f} | {cpu:.2f} | "
                f"{'1.00' if same else f'{ratio:.2f}x'} | {'1.00' if same else f'{by_cpu:.2f}x'} |"
            )
        print()
    if not args.no_c10k and "flowcoro" in servers:
        c10k(args.c10k_duration)
    return 0


def c10k(duration: float) -> None:
    """10,000 connections two ways: wrk's closed loop (each connection always has a request in
    flight, so mean latency is connections / throughput by Little's law), and 10,000 held
    keep-alive connections (one request each every 2 s) while wrk -c100 measures p99."""
    running = Running("flowcoro")
    try:
        res = wrk(running.port, "/", 10_000, duration)
        print(
            f"wrk -t1 -c10000 -d{duration:g}s (closed loop): {res['rps']:,.0f} req/s, "
            f"p99 {res['p99_ms']:.1f} ms, errors {res['errors']:.0f}",
            flush=True,
        )
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        holder = subprocess.Popen(
            [
                "taskset",
                "-c",
                "1",
                sys.executable,
                str(HERE),
                "--hold",
                str(running.port),
                "10000",
                str(duration + 15),
            ],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(12)  # let the 10,000 connections open
        res = wrk(running.port, "/", 100, duration)
        out, _ = holder.communicate(timeout=duration + 120)
        print(
            f"10,000 held keep-alive connections + wrk -t1 -c100 -d{duration:g}s: "
            f"{res['rps']:,.0f} req/s, p99 {res['p99_ms']:.1f} ms, wrk errors "
            f"{res['errors']:.0f}; holder: {out.strip()}",
            flush=True,
        )
    finally:
        running.stop()


def _median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in runs) if runs else float("nan")


def _machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {sys.version.split()[0]}, {sys.platform}"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
