"""What flowcoro-observe costs a request: ``./tools/dev bench observe [--rounds N] [--duration S]``.

wrk's run-to-run noise here is larger than the 1% budget, so the cost is measured twice, in one run:

1. **Micro** (precise): the exact per-request work the HTTP protocol does when observers exist
   (two ``perf_counter()`` calls, the observer loop, ``request_started`` and ``request_finished``
   of observe's `RequestMetrics`), timed in a tight loop against the same code with no
   observers. That difference is the instrumentation's CPU per request.
2. **Macro** (end to end, noisy): ``examples/hello.py`` served on core 0 (``taskset -c 0``),
   ``wrk -t1 -c50`` on core 1 against ``GET /json``, each configuration in turn per round; the
   server's CPU time (utime+stime from /proc) divided by the requests served gives its CPU per
   request, without observe (``FLOWCORO_PLUGINS_BLOCK=observe``), with every built-in instrument
   on (request metrics, in-flight, loop lag, pool, connection and process collectors), and with
   tracing too (SDK, no exporter, 1% head sampling) for information.

The throughput fraction a CPU-bound server keeps is ``server / (server + instrumentation)``;
the table prints it from the micro cost against the measured server cost. wrk is installed with
apt-get when missing. ``--serve PORT`` is the internal mode of the server subprocess.
"""

from __future__ import annotations

import sys

from _common import ensure_wrk, free_port

if __name__ == "__main__":
    # Run as a script (the server subprocess), this directory comes first on sys.path, where
    # tools/bench/http.py would shadow the standard library's ``http`` package.
    sys.path[:] = [p for p in sys.path if p and not p.rstrip("/").endswith("tools/bench")]

import argparse
import os
import re
import statistics
import subprocess
import time
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve()

CONFIGS: dict[str, dict[str, str]] = {
    "without observe": {"FLOWCORO_PLUGINS_BLOCK": "observe"},
    "observe (all built-ins)": {"FLOWCORO_TRACING": "off"},
    "observe + tracing 1%": {
        "FLOWCORO_TRACING": "on",
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.01",
    },
}


# -- the server subprocess ---------------------------------------------------------------------


def serve(port: int) -> None:
    import asyncio

    import uvloop

    sys.path.insert(0, str(ROOT))
    from examples.hello import app
    from flowcoro.net import start_server

    async def main() -> None:
        await app.start()
        server = await start_server(app.protocol_factory(), host="127.0.0.1", port=port)
        print("ready", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await server.shutdown(1.0)
            await app.stop()

    uvloop.run(main())


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wrk(wrk: str, port: int, seconds: float, connections: int = 50) -> int:
    out = subprocess.run(
        [
            "taskset",
            "-c",
            "1",
            wrk,
            "-t1",
            f"-c{connections}",
            f"-d{seconds:g}s",
            f"http://127.0.0.1:{port}/json",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    match = re.search(r"(\d+) requests in", out)
    if not match or "Non-2xx" in out:
        raise SystemExit(f"bench observe: unexpected wrk output:\n{out}")
    return int(match.group(1))


def macro_round(wrk: str, name: str, duration: float) -> dict[str, float]:
    port = free_port()
    env = {**os.environ, **CONFIGS[name]}
    proc = subprocess.Popen(
        ["taskset", "-c", "0", sys.executable, str(HERE), "--serve", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise SystemExit(f"bench observe: the {name!r} server did not start")
        _wrk(wrk, port, 1.0)  # warm up
        before = _cpu_seconds(proc.pid)
        started = time.perf_counter()
        requests = _wrk(wrk, port, duration)
        elapsed = time.perf_counter() - started
        cpu = _cpu_seconds(proc.pid) - before
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
    return {"rps": requests / elapsed, "cpu_us": cpu / requests * 1e6}


# -- the in-situ measurement -------------------------------------------------------------------


def insitu(mode: str, reps: int = 40, requests: int = 4000) -> float:
    """CPU µs per ``GET /json`` of the real app and protocol, fed requests in process through a
    transport that discards the responses (no kernel, no client: deterministic enough to see
    sub-microsecond differences). Best of ``reps``."""
    import asyncio

    import uvloop

    sys.path.insert(0, str(ROOT))
    from examples.hello import app

    if mode.startswith("null observer"):

        class Null:
            def request_started(self, request: object) -> None:
                pass

            def request_finished(self, *args: object) -> None:
                pass

        app.add_observer(Null())

    class Sink(asyncio.Transport):
        def write(self, data: object) -> None:
            pass

        def writelines(self, data: object) -> None:
            pass

        def is_closing(self) -> bool:
            return False

        def get_extra_info(self, name: str, default: object = None) -> object:
            return ("127.0.0.1", 40000) if name == "peername" else default

        def pause_reading(self) -> None:
            pass

        def resume_reading(self) -> None:
            pass

        def close(self) -> None:
            pass

        def get_write_buffer_size(self) -> int:
            return 0

    request = b"GET /json HTTP/1.1\r\nHost: bench\r\nUser-Agent: wrk\r\n\r\n"

    async def main() -> float:
        await app.start()
        factory = app.protocol_factory()
        best = float("inf")
        for _ in range(reps):
            proto = factory()
            proto.connection_made(Sink())
            started = time.process_time()
            for i in range(requests):
                proto.data_received(request)
                if i % 64 == 0:
                    await asyncio.sleep(0)  # let anything that suspended finish
            await asyncio.sleep(0)
            best = min(best, (time.process_time() - started) / requests * 1e6)
            proto.connection_lost(None)
        await app.stop()
        return best

    return uvloop.run(main())


# -- the micro measurement ---------------------------------------------------------------------


def micro(repeat: int = 7, number: int = 500_000) -> tuple[float, float]:
    """(µs per request added by the observer path, µs of the observer calls alone)."""
    from time import perf_counter

    from flowcoro.observe import RequestMetrics

    class Req:
        __slots__ = ("_started", "method", "route")

        def __init__(self) -> None:
            self.method = "GET"
            self.route = "/json"
            self._started = 0.0

    def protocol_path(observers: tuple[object, ...]) -> object:
        # The same statements flowcoro-http's protocol runs around a request (_start/_done).
        req = Req()

        def one() -> None:
            if observers:
                req._started = perf_counter()
                for observer in observers:
                    observer.request_started(req)  # type: ignore[attr-defined]
            if observers:
                duration = perf_counter() - req._started if req._started else 0.0
                for observer in observers:
                    try:
                        observer.request_finished(req, req.route, 200, duration)  # type: ignore[attr-defined]
                    except Exception:
                        raise

        return one

    metrics = RequestMetrics()
    with_obs = protocol_path((metrics,))
    without = protocol_path(())
    req = Req()
    started = metrics.request_started
    finished = metrics.request_finished

    def calls_only() -> None:
        started(req)
        finished(req, "/json", 200, 0.0001)

    def empty() -> None:
        pass

    best = {}
    for name, fn in (
        ("with", with_obs),
        ("without", without),
        ("calls", calls_only),
        ("empty", empty),
    ):
        best[name] = min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6  # type: ignore[arg-type]
    return best["with"] - best["without"], best["calls"] - best["empty"]


# -- the report --------------------------------------------------------------------------------


INSITU: dict[str, dict[str, str]] = {
    "without observe": {"FLOWCORO_PLUGINS_BLOCK": "observe"},
    "null observer (HTTP's observer plumbing)": {"FLOWCORO_PLUGINS_BLOCK": "observe"},
    "observe (all built-ins)": CONFIGS["observe (all built-ins)"],
    "observe + tracing 1%": CONFIGS["observe + tracing 1%"],
}


def _insitu_round(name: str) -> float:
    out = subprocess.run(
        ["taskset", "-c", "0", sys.executable, str(HERE), "--insitu", name],
        env={**os.environ, **INSITU[name]},
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return float(out.split()[-1])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench observe")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--micro", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--insitu", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve is not None:
        serve(args.serve)
        return 0
    if args.micro:
        print(*micro())
        return 0
    if args.insitu is not None:
        print(insitu(args.insitu))
        return 0
    wrk = ensure_wrk("observe")
    print(f"machine: {os.cpu_count()} cores, {_cpu_model()}; python {sys.version.split()[0]}")
    print(
        f"rounds: {args.rounds}; wrk -t1 -c50 -d{args.duration:g}s per configuration and round; "
        "in situ: best of 40 x 4,000 requests per round; micro: best of 7 x 500,000"
    )
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in CONFIGS}
    situ: dict[str, list[float]] = {name: [] for name in INSITU}
    names = list(CONFIGS)
    for i in range(args.rounds):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:  # rotate who goes first
            runs[name].append(macro_round(wrk, name, args.duration))
        for name in INSITU:
            situ[name].append(_insitu_round(name))
        print(f"  round {i + 1}/{args.rounds} done", flush=True)
    # In its own process on core 0: run.py puts tools/bench first on sys.path (see the top).
    out = subprocess.run(
        ["taskset", "-c", "0", sys.executable, str(HERE), "--micro"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    path_us, calls_us = float(out[0]), float(out[1])

    med = statistics.median
    base = med(r["cpu_us"] for r in runs[names[0]])
    print()
    print("End to end, GET /json, server on core 0, wrk on core 1 (noisy: > 1% run to run):")
    print()
    print("| configuration | req/s | spread | server CPU µs/req | spread | CPU vs without |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in names:
        rps = [r["rps"] for r in runs[name]]
        cpu = [r["cpu_us"] for r in runs[name]]
        print(
            f"| {name} | {med(rps):,.0f} | {min(rps):,.0f}-{max(rps):,.0f} | {med(cpu):.2f} | "
            f"{min(cpu):.2f}-{max(cpu):.2f} | {med(cpu) / base * 100:.1f}% |"
        )
    print()
    print("In situ: the real app and protocol fed GET /json in process (no kernel, no client):")
    print()
    print("| configuration | CPU µs/req | spread | added vs without |")
    print("|---|---:|---:|---:|")
    without = med(situ["without observe"])
    for name, values in situ.items():
        print(
            f"| {name} | {med(values):.2f} | {min(values):.2f}-{max(values):.2f} | "
            f"{med(values) - without:+.2f} |"
        )
    print()
    print(
        f"micro (hot loop): RequestMetrics calls {calls_us * 1000:.0f} ns/request; with the "
        f"protocol's observer path (2 perf_counter, loops) {path_us * 1000:.0f} ns/request"
    )
    added = med(situ["observe (all built-ins)"]) - without
    own = med(situ["observe (all built-ins)"]) - med(
        situ["null observer (HTTP's observer plumbing)"]
    )
    traced = med(situ["observe + tracing 1%"]) - without
    print(f"server CPU per request without observe (wrk, median): {base:.2f} µs")
    for label, cost in (
        ("every built-in instrument, in situ", added),
        ("  of which observe's own code (vs a null observer)", own),
        ("every built-in instrument, micro", path_us),
        ("built-ins + tracing at 1% head sampling, in situ", traced),
    ):
        kept = base / (base + max(cost, 0.0))
        print(f"throughput kept, {label}: {base:.2f} / ({base:.2f} + {cost:.2f}) = {kept:.2%}")
    print("target: >= 99% with every built-in instrument on")
    return 0


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
