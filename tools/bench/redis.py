"""flowcoro.db.redis vs redis.asyncio (redis-py, hiredis parser for both), same run.

    ./tools/dev bench redis [--rounds=5] [--duration=2] [--concurrency=50] [--batch=100]
                            [--loop=uvloop|asyncio]

Workloads: GET and SET from N concurrent tasks (one client object each side: flowcoro pipelines
automatically over one connection; redis.asyncio uses its pool of up to N connections), and
explicit pipelines of ``--batch`` GETs issued back to back by one task. Every measurement runs
in a fresh subprocess pinned to CPU 0 (``taskset -c 0``); the Redis server (a system service)
is pinned to CPU 1 with ``taskset -pc`` when permitted, and its affinity restored afterwards.
Rounds interleave the two clients (alternating which goes first). ``redis-benchmark`` (also on
CPU 0) runs in each round twice: ``-c N -P batch`` for the server's ceiling, and ``-c N -P 1``
(the same concurrency without pipelining) for reference. The table gives medians of commands per
second, the spread (min-max across rounds as % of the median), the ratio flowcoro / redis.asyncio
(median and range of the per-round ratios, each round's pair measured back to back), and
flowcoro's fraction of the ceiling.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
HOST, PORT = "127.0.0.1", 6379
VALUE = b"v" * 100
WORKLOADS = ("get", "set", "pipeline")


def _peer_importable() -> None:
    """This file is named redis.py: keep its folder off sys.path so ``import redis`` finds
    redis-py."""
    here = str(HERE.parent)
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    cached = sys.modules.get("redis")
    if cached is not None and getattr(cached, "__file__", None) == str(HERE):
        del sys.modules["redis"]


# -- the measured process ------------------------------------------------------------------------


async def _measure(impl: str, workload: str, duration: float, conc: int, batch: int) -> float:
    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    if impl == "flowcoro":
        from flowcoro.db.redis import Redis

        client: Any = Redis.from_url(f"redis://{HOST}:{PORT}/0")
    else:
        import redis.asyncio as ra

        client = ra.Redis(host=HOST, port=PORT, max_connections=conc)
    await client.set(prefix + "key", VALUE)
    count = 0

    async def one_task(i: int, end: float) -> None:
        nonlocal count
        key = prefix + "key"
        wkey = f"{prefix}w{i}"
        get, set_ = client.get, client.set
        n = 0
        if workload == "get":
            while time.perf_counter() < end:
                await get(key)
                n += 1
        elif workload == "set":
            while time.perf_counter() < end:
                await set_(wkey, VALUE)
                n += 1
        else:
            while time.perf_counter() < end:
                pipe = client.pipeline(transaction=False)
                for _ in range(batch):
                    pipe.get(key)
                await pipe.execute()
                n += batch
        count += n

    tasks = conc if workload != "pipeline" else 1
    await asyncio.gather(*(one_task(i, time.perf_counter() + 0.3) for i in range(tasks)))  # warm
    count = 0
    start = time.perf_counter()
    await asyncio.gather(*(one_task(i, start + duration) for i in range(tasks)))
    elapsed = time.perf_counter() - start
    keys = [prefix + "key", *(f"{prefix}w{i}" for i in range(conc))]
    await client.delete(*keys)
    await client.aclose()
    return count / elapsed


def worker(argv: list[str]) -> int:
    _peer_importable()
    opts = _options(argv)
    coro = _measure(
        opts["impl"],
        opts["workload"],
        float(opts["duration"]),
        int(opts["concurrency"]),
        int(opts["batch"]),
    )
    if opts.get("loop", "uvloop") == "uvloop":
        import uvloop

        rate = uvloop.run(coro)
    else:
        rate = asyncio.run(coro)
    print(json.dumps({"rate": rate}))
    return 0


# -- the driver ----------------------------------------------------------------------------------


def _options(argv: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for arg in argv:
        if arg.startswith("--") and "=" in arg:
            key, value = arg[2:].split("=", 1)
            out[key] = value
        elif arg.startswith("--"):
            out[arg[2:]] = "1"
    return out


def _ensure_peer() -> None:
    _peer_importable()
    try:
        import hiredis  # noqa: F401
        import redis  # noqa: F401
    except ImportError:
        print("installing the peer: redis (redis-py) and hiredis", flush=True)
        subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "redis>=5", "hiredis"])


def _pin(cmd: list[str], cpu: int) -> list[str]:
    return ["taskset", "-c", str(cpu), *cmd] if shutil.which("taskset") else cmd


def _run_client(impl: str, workload: str, opts: dict[str, str]) -> float:
    cmd = [sys.executable, str(HERE), "--worker", f"--impl={impl}", f"--workload={workload}"]
    cmd += [f"--{k}={opts[k]}" for k in ("duration", "concurrency", "batch", "loop")]
    out = subprocess.run(_pin(cmd, 0), capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{impl} {workload} failed:\n{out.stderr}")
    return float(json.loads(out.stdout.strip().splitlines()[-1])["rate"])


def _redis_benchmark(test: str, clients: str, pipeline: str) -> float | None:
    exe = shutil.which("redis-benchmark")
    if exe is None:
        return None
    n = "1000000" if pipeline != "1" else "100000"
    cmd = [exe, "-h", HOST, "-p", str(PORT), "-n", n, "-d", "100", "-r", "1000", "--csv"]
    cmd += ["-c", clients, "-P", pipeline, "-t", test]
    out = subprocess.run(_pin(cmd, 0), capture_output=True, text=True, check=False)
    for line in out.stdout.splitlines():
        cells = [c.strip('"') for c in line.split(",")]
        if len(cells) > 1 and cells[0].upper() in ("GET", "SET"):
            return float(cells[1])
    return None


def _redis_pid() -> int | None:
    try:
        out = subprocess.run(
            ["pgrep", "-f", f"redis-server.*:{PORT}"], capture_output=True, text=True, check=False
        )
        pids = [int(p) for p in out.stdout.split()]
    except (OSError, ValueError):
        return None
    return pids[0] if pids else None


def _affinity(pid: int) -> str | None:
    out = subprocess.run(["taskset", "-p", str(pid)], capture_output=True, text=True, check=False)
    m = re.search(r"mask:\s*([0-9a-fA-F]+)", out.stdout)
    return m.group(1) if m else None


def _spread(values: list[float]) -> float:
    med = statistics.median(values)
    return (max(values) - min(values)) / med * 100 if med else 0.0


def main(argv: list[str]) -> int:
    # The bare client against the bare peer: no instrumentation plugin (observe) rides along.
    os.environ.setdefault("FLOWCORO_PLUGINS", "core,db")
    if "--worker" in argv:
        return worker(argv)
    opts = {"rounds": "5", "duration": "2", "concurrency": "50", "batch": "100", "loop": "uvloop"}
    opts.update(_options(argv))
    rounds = int(opts["rounds"])
    _ensure_peer()
    pid = _redis_pid()
    old_mask = _affinity(pid) if pid and shutil.which("taskset") else None
    pinned = False
    if pid and old_mask:
        pinned = (
            subprocess.run(
                ["taskset", "-pc", "1", str(pid)], capture_output=True, check=False
            ).returncode
            == 0
        )
    print(
        f"redis-server pid {pid}: {'pinned to CPU 1' if pinned else 'not pinned'}; "
        f"clients pinned to CPU 0; {rounds} rounds x {opts['duration']} s, "
        f"concurrency {opts['concurrency']}, pipeline batch {opts['batch']}, loop {opts['loop']}",
        flush=True,
    )
    results: dict[tuple[str, str], list[float]] = {}
    try:
        for r in range(rounds):
            for workload in WORKLOADS:
                order = ["flowcoro", "redis-py"] if r % 2 == 0 else ["redis-py", "flowcoro"]
                for impl in order:
                    results.setdefault((impl, workload), []).append(
                        _run_client(impl, workload, opts)
                    )
                test = "set" if workload == "set" else "get"
                conc = opts["concurrency"]
                for label, clients, depth in (
                    ("ceiling", conc, opts["batch"]),  # the server's ceiling: pipelined
                    ("plain", conc, "1"),  # same concurrency, one command in flight per client
                ):
                    rate = _redis_benchmark(test, clients, depth)
                    if rate is not None:
                        results.setdefault((label, workload), []).append(rate)
            print(f"round {r + 1}/{rounds} done", flush=True)
    finally:
        if pinned and pid and old_mask:
            subprocess.run(["taskset", "-p", old_mask, str(pid)], capture_output=True, check=False)
    _report(results, opts, pinned)
    return 0


def _report(
    results: dict[tuple[str, str], list[float]], opts: dict[str, str], pinned: bool
) -> None:
    import hiredis
    import redis

    server = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, check=False
    ).stdout.split()
    version = next((w.split("=")[1] for w in server if w.startswith("v=")), "?")
    cpu = platform.processor() or "?"
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    conc, batch = opts["concurrency"], opts["batch"]
    print()
    print(
        f"machine: {cpu}, {os.cpu_count()} CPUs (shared with other work: expect noise); "
        f"Python {platform.python_version()}; Redis {version} "
        f"({'pinned to CPU 1' if pinned else 'not pinned'}); redis-py {redis.__version__}; "
        f"hiredis {hiredis.__version__}; loop {opts['loop']}; {opts['rounds']} rounds x "
        f"{opts['duration']} s"
    )
    print()
    print(
        "| workload | flowcoro cmd/s (spread) | redis.asyncio cmd/s (spread) "
        "| ratio, median of rounds (range) | redis-benchmark ceiling "
        f"(-c {conc} -P {batch}) | flowcoro / ceiling | redis-benchmark -c {conc} -P 1 |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    names = {
        "get": f"GET, {conc} tasks",
        "set": f"SET, {conc} tasks",
        "pipeline": f"pipelines of {batch} GET",
    }
    for workload in WORKLOADS:
        ours, peer = results[("flowcoro", workload)], results[("redis-py", workload)]
        mo, mp = statistics.median(ours), statistics.median(peer)
        ratios = [o / p for o, p in zip(ours, peer, strict=True)]
        cells = []
        for label in ("ceiling", "plain"):
            values = results.get((label, workload))
            cells.append(
                f"{statistics.median(values):,.0f} (±{_spread(values):.0f}%)" if values else "n/a"
            )
        ceil = results.get(("ceiling", workload))
        frac = f"{mo / statistics.median(ceil):.0%}" if ceil else "n/a"
        print(
            f"| {names[workload]} | {mo:,.0f} (±{_spread(ours):.0f}%) | "
            f"{mp:,.0f} (±{_spread(peer):.0f}%) | {statistics.median(ratios):.2f}x "
            f"({min(ratios):.2f}-{max(ratios):.2f}) | {cells[0]} | {frac} | {cells[1]} |"
        )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
