"""ASGI benchmark: one small Starlette app served by ``flowcoro serve``, uvicorn and granian.

``.venv/bin/python tools/bench/run.py asgi [--rounds=N] [--duration=S] [--conns=C]``

Each server is one process pinned to core 0 (``taskset -c 0``), wrk runs on core 1
(``taskset -c 1 wrk -t1 -cC``) against ``GET /`` (text) and ``GET /json``. Rounds are
interleaved (every server once per round, in a rotating order); the table shows the median
requests/s, the spread (min-max across rounds), the median p99 and the ratio to flowcoro.
uvicorn runs with uvloop and httptools, granian with its ASGI interface and uvloop; all three
serve the very same application (`APP_SOURCE`, imported as ``bench_asgi_app:app``).
``--serve NAME PORT`` is the internal mode of a server subprocess.
"""

from __future__ import annotations

import sys

from _common import ensure_modules, ensure_wrk, free_port

if __name__ == "__main__":
    # Run as a script (a server subprocess), this directory comes first on sys.path, where its
    # http.py would shadow the standard library's ``http`` package.
    sys.path[:] = [p for p in sys.path if p and not p.rstrip("/").endswith("tools/bench")]

import argparse
import os
import re
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
ROOT = HERE.parents[2]
SERVERS = ["flowcoro", "uvicorn", "granian"]
PEERS = {"uvicorn": ["uvicorn", "httptools", "uvloop"], "granian": ["granian"]}
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


# The benchmarked application: plain Starlette, two routes. Written to a directory of its own
# for the servers to import as ``bench_asgi_app:app`` (this directory cannot go on sys.path:
# its http.py would shadow the standard library's http package).
APP_SOURCE = """
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route


async def hello(request):
    return PlainTextResponse("Hello, World!")


async def hello_json(request):
    return JSONResponse({"message": "Hello, World!"})


app = Starlette(routes=[Route("/", hello), Route("/json", hello_json)])
"""
APP_DIR = Path(tempfile.gettempdir()) / "flowcoro-bench-asgi"
TARGET = "bench_asgi_app:app"


def _write_app() -> None:
    APP_DIR.mkdir(exist_ok=True)
    (APP_DIR / "bench_asgi_app.py").write_text(APP_SOURCE)


def serve(name: str, port: int) -> None:
    os.chdir(APP_DIR)
    if name == "flowcoro":
        flowcoro = Path(sys.executable).with_name("flowcoro")
        args = [str(flowcoro), "serve", TARGET, "--port", str(port), "--loop", "uvloop"]
        os.execv(args[0], args)
    elif name == "uvicorn":
        import uvicorn

        sys.path.insert(0, str(APP_DIR))
        uvicorn.run(
            TARGET,
            host="127.0.0.1",
            port=port,
            loop="uvloop",
            http="httptools",
            log_level="warning",
            access_log=False,
            lifespan="auto",
            backlog=16384,
        )
    elif name == "granian":
        args = [
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
            TARGET,
        ]
        os.execv(args[0], args)
    else:
        raise SystemExit(f"unknown server {name!r}")


def _ensure_tools() -> list[str]:
    ensure_wrk("asgi")
    ensure_modules(["starlette"])
    usable = ["flowcoro"]
    for name, packages in PEERS.items():
        if not ensure_modules(packages, why=name):
            print(f"skipping {name}: could not install {packages}")
            continue
        usable.append(name)
    return usable


class Running:
    def __init__(self, name: str) -> None:
        self.port = free_port()
        env = dict(os.environ, FLOWCORO_PLUGINS="http,net", PYTHONPATH=str(APP_DIR))
        self.proc = subprocess.Popen(
            ["taskset", "-c", "0", sys.executable, str(HERE), "--serve", name, str(self.port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"{name} exited with {self.proc.returncode}: {err[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    if s.recv(100).startswith(b"HTTP/1.1 200"):
                        return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{name} did not become ready")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wrk(port: int, path: str, conns: int, duration: float) -> tuple[float, float, int]:
    cmd = (
        f"taskset -c 1 wrk -t1 -c{conns} -d{duration:g}s --latency --timeout 5s "
        f"http://127.0.0.1:{port}{path}"
    )
    out = subprocess.run(
        ["bash", "-c", cmd], capture_output=True, text=True, timeout=duration + 60
    ).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    rps = float(m.group(1)) if m else 0.0
    p = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    p99 = float(p.group(1)) * _UNITS[p.group(2)] if p else float("nan")
    errors = 0
    for pattern in (
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
        r"Non-2xx or 3xx responses: (\d+)",
    ):
        e = re.search(pattern, out)
        if e:
            errors += sum(int(x) for x in e.groups())
    return rps, p99, errors


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench asgi")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--conns", type=int, default=100)
    parser.add_argument("--serve", nargs=2, metavar=("NAME", "PORT"))
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return 0
    servers = _ensure_tools()
    _write_app()
    paths = ["/", "/json"]
    results: dict[tuple[str, str], list[tuple[float, float, int]]] = {}
    for r in range(args.rounds):
        order = servers[r % len(servers) :] + servers[: r % len(servers)]
        for name in order:
            running = Running(name)
            try:
                wrk(running.port, "/", args.conns, 1.0)  # warm-up
                for path in paths:
                    results.setdefault((name, path), []).append(
                        wrk(running.port, path, args.conns, args.duration)
                    )
            finally:
                running.stop()
        print(f"round {r + 1}/{args.rounds} done", flush=True)
    print(
        f"\nStarlette app, {args.rounds} rounds x {args.duration:g}s, wrk -t1 -c{args.conns}, "
        f"server on core 0, wrk on core 1 ({os.cpu_count()} CPUs)\n"
    )
    print(
        f"| {'path':6} | {'server':9} | {'req/s median':>12} | {'spread':>15} | "
        f"{'p99 ms':>7} | {'errors':>6} | {'vs flowcoro':>11} |"
    )
    print(
        "|--------|-----------|--------------|-----------------|---------|--------|-------------|"
    )
    for path in paths:
        base = statistics.median(x[0] for x in results[("flowcoro", path)])
        for name in servers:
            rows = results[(name, path)]
            rps = [x[0] for x in rows]
            med = statistics.median(rps)
            p99 = statistics.median(x[1] for x in rows)
            errors = sum(x[2] for x in rows)
            ratio = med / base if base else float("nan")
            print(
                f"| {path:6} | {name:9} | {med:12.0f} | {min(rps):7.0f}-{max(rps):<7.0f} | "
                f"{p99:7.2f} | {errors:6d} | {ratio:10.2f}x |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
