"""flowcoro-core's runtime pieces against their stdlib peers: ``./tools/dev bench core``.

Cases (each round runs ours and the peer in fresh subprocesses, interleaved, pinned to one core
with ``taskset`` when available; medians over the rounds, spread = (max - min) / median, and the
ratio as the median of the per-round ratios, which cancels most drift of a shared machine):

- ``channel-1x1`` / ``channel-8x8``: items/s through ``Channel(1024)`` vs ``asyncio.Queue(1024)``
  with 1 producer x 1 consumer and 8 x 8, on uvloop.
- ``logger-call``: microseconds per logging call on the event loop, ``get_logger().info(...)``
  with a JSON file sink vs stdlib ``logging`` with a ``FileHandler`` (sinks really write).
- ``logger-disabled``: microseconds per call of a disabled level (debug when the level is info).
- ``logger-stall``: the longest event-loop stall (ms) while the sink blocks for 1 s, with a
  task logging 100 records every 2 ms; ours (writer thread) vs stdlib (handler in the caller).
- ``pool-1``: acquire+release per second, one task, ``Pool(max_size=10)`` vs a pool built on
  ``asyncio.Queue``; ``pool-20x10``: 20 tasks contending for 10 resources.

Options: ``--rounds=N`` (default 5), ``--quick`` (smaller sizes), ``--no-pin``,
``--only=PREFIX`` (e.g. ``--only=channel``; repeatable).
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

HERE = os.path.abspath(__file__)
SCALE = {"quick": False}


def _n(full: int) -> int:
    return full // 10 if SCALE["quick"] else full


# ----------------------------------------------------------------------------- workers


async def _channel(impl: str, producers: int, consumers: int, total: int) -> float:
    from flowcoro.core import Channel

    if impl == "ours":
        ch: Any = Channel(1024)
        put, get = ch.send, ch.recv
    else:
        ch = asyncio.Queue(1024)
        put, get = ch.put, ch.get
    per_p, per_c = total // producers, total // consumers

    async def produce() -> None:
        for i in range(per_p):
            await put(i)

    async def consume() -> None:
        for _ in range(per_c):
            await get()

    start = time.perf_counter()
    await asyncio.gather(
        *(produce() for _ in range(producers)), *(consume() for _ in range(consumers))
    )
    return total / (time.perf_counter() - start)


def _setup_logger(
    impl: str, directory: str, sink_gate: threading.Event | None = None, capacity: int = 200_000
) -> Any:
    """A logger writing to a file in ``directory``; with ``sink_gate``, the first write blocks
    until the gate opens (a sink stuck for a while)."""
    import logging

    from flowcoro.core import logger as flog

    path = os.path.join(directory, f"{impl}.log")
    if impl == "ours":
        sink: Any = flog.FileSink(path)
        if sink_gate is not None:
            inner = sink

            class Stuck:
                def emit(self, record: dict[str, Any]) -> None:
                    sink_gate.wait()
                    inner.emit(record)

                def flush(self) -> None:
                    inner.flush()

                def close(self) -> None:
                    inner.close()

            sink = Stuck()
        flog.configure_logging(sinks=[sink], capacity=capacity, level="info")
        return flog.get_logger("bench")
    std = logging.getLogger("bench")
    std.propagate = False
    std.setLevel(logging.INFO)
    handler: logging.Handler = logging.FileHandler(path)
    if sink_gate is not None:

        class StuckHandler(logging.FileHandler):
            def emit(self, record: logging.LogRecord) -> None:
                sink_gate.wait()
                super().emit(record)

        handler = StuckHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    std.addHandler(handler)
    return std


async def _logger_call(impl: str, total: int, disabled: bool = False) -> float:
    from flowcoro.core import logger as flog

    with tempfile.TemporaryDirectory() as tmp:
        log = _setup_logger(impl, tmp)
        call = log.debug if disabled else log.info
        start = time.perf_counter()
        if impl == "ours":
            for i in range(total):
                call("user.login", user_id=i, path="/login")
        else:
            for i in range(total):
                call("user.login user_id=%s path=%s", i, "/login")
        elapsed = time.perf_counter() - start
        if impl == "ours":
            flog.shutdown(30)
            if flog.statistics().dropped:
                raise RuntimeError("records were dropped: the measurement is not comparable")
        return elapsed / total * 1e6


async def _logger_stall(impl: str) -> float:
    from flowcoro.core import logger as flog

    gate = threading.Event()
    with tempfile.TemporaryDirectory() as tmp:
        # The shipped default capacity (10,000): the queue is bounded, the excess is dropped
        # and counted while the sink is stuck. "none" logs nothing: the loop's own baseline.
        log = None if impl == "none" else _setup_logger(impl, tmp, gate, capacity=10_000)
        worst = 0.0
        stop = False

        async def ticker() -> None:
            nonlocal worst
            loop = asyncio.get_running_loop()
            while not stop:
                before = loop.time()
                await asyncio.sleep(0.001)
                worst = max(worst, loop.time() - before - 0.001)

        async def producer() -> None:
            i = 0
            while not stop:
                for _ in range(100 if impl != "none" else 0):
                    if impl == "ours":
                        log.info("tick", i=i)
                    else:
                        log.info("tick i=%s", i)
                    i += 1
                await asyncio.sleep(0.002)

        tick = asyncio.create_task(ticker())
        await asyncio.sleep(0.05)
        # The sink blocks for one second from now.
        releaser = threading.Timer(1.0, gate.set)
        releaser.start()
        prod = asyncio.create_task(producer())
        await asyncio.sleep(1.5)
        stop = True
        await asyncio.gather(tick, prod)
        gate.set()
        if impl == "ours":
            flog.shutdown(30)
        return worst * 1000


async def _pool(impl: str, tasks: int, total: int) -> float:
    from flowcoro.core import Pool

    class Res:
        pass

    if impl == "ours":

        async def make() -> Res:
            return Res()

        pool: Any = Pool(make, max_size=10, acquire_timeout=30)

        async def one() -> None:
            async with pool.acquire():
                if tasks > 1:
                    await asyncio.sleep(0)

    else:
        queue: asyncio.Queue[Res] = asyncio.Queue()
        for _ in range(10):
            queue.put_nowait(Res())

        async def one() -> None:
            r = await asyncio.wait_for(queue.get(), 30)
            try:
                if tasks > 1:
                    await asyncio.sleep(0)
            finally:
                queue.put_nowait(r)

    per = total // tasks

    async def worker() -> None:
        for _ in range(per):
            await one()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    rate = per * tasks / (time.perf_counter() - start)
    if impl == "ours":
        await pool.aclose()
    return rate


CASES: dict[str, tuple[str, str, Callable[[str], Any]]] = {
    # name: (unit, better, coroutine factory)
    "channel-1x1": ("items/s", "higher", lambda impl: _channel(impl, 1, 1, _n(400_000))),
    "channel-8x8": ("items/s", "higher", lambda impl: _channel(impl, 8, 8, _n(400_000))),
    "logger-call": ("us/call", "lower", lambda impl: _logger_call(impl, _n(100_000))),
    "logger-disabled": ("us/call", "lower", lambda impl: _logger_call(impl, _n(400_000), True)),
    "logger-stall": ("ms max stall", "lower", _logger_stall),
    "pool-1": ("acq+rel/s", "higher", lambda impl: _pool(impl, 1, _n(200_000))),
    "pool-20x10": ("acq+rel/s", "higher", lambda impl: _pool(impl, 20, _n(200_000))),
}
PEERS = {
    "channel": "asyncio.Queue",
    "logger": "stdlib logging+FileHandler",
    "pool": "asyncio.Queue pool",
}


def worker(argv: list[str]) -> int:
    case, impl = argv[0], argv[1]
    SCALE["quick"] = "--quick" in argv
    import uvloop

    value = uvloop.run(CASES[case][2](impl))
    print(json.dumps({"value": value}))
    return 0


# ----------------------------------------------------------------------------- driver


def _measure(case: str, impl: str, pin: bool, quick: bool) -> float:
    cmd = [sys.executable, HERE, "--worker", case, impl] + (["--quick"] if quick else [])
    if pin and shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        cmd = ["taskset", "-c", "1", *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"{case}/{impl} failed:\n{out.stderr}")
    return float(json.loads(out.stdout.strip().splitlines()[-1])["value"])


def machine() -> str:
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import uvloop

        uv = getattr(uvloop, "__version__", "?")
    except ImportError:  # pragma: no cover
        uv = "not installed"
    return (
        f"nproc={os.cpu_count()}, CPU: {model}, Python {platform.python_version()}, "
        f"uvloop {uv}, {platform.system()} {platform.release()}"
    )


def _fmt(value: float) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}"


def main(argv: list[str]) -> int:
    rounds = 5
    for arg in argv:
        if arg.startswith("--rounds="):
            rounds = int(arg.split("=", 1)[1])
    quick = "--quick" in argv
    pin = "--no-pin" not in argv
    only = [a.split("=", 1)[1] for a in argv if a.startswith("--only=")]
    cases = [c for c in CASES if not only or any(c.startswith(o) for o in only)]
    print(f"machine: {machine()}")
    print(f"rounds: {rounds} (ours and peer interleaved, fresh process each), pinned: {pin}")
    rows = []
    baseline = ""
    for case in cases:
        unit, better, _ = CASES[case]
        ours: list[float] = []
        peer: list[float] = []
        for _ in range(rounds):
            ours.append(_measure(case, "ours", pin, quick))
            peer.append(_measure(case, "peer", pin, quick))
        mo, mp = statistics.median(ours), statistics.median(peer)
        so = (max(ours) - min(ours)) / mo * 100 if mo else 0.0
        sp = (max(peer) - min(peer)) / mp * 100 if mp else 0.0
        # Each round runs ours and the peer back to back, so the per-round ratio cancels most
        # of the drift of a shared machine; report its median and range.
        per_round = [
            (o / p if better == "higher" else p / o) if o and p else float("inf")
            for o, p in zip(ours, peer, strict=True)
        ]
        ratio = (statistics.median(per_round), min(per_round), max(per_round))
        rows.append((case, unit, mo, so, mp, sp, ratio, PEERS[case.split("-")[0]]))
        print(f"  {case}: ours {_fmt(mo)} (±{so:.0f}%), peer {_fmt(mp)} (±{sp:.0f}%)", flush=True)
        if case == "logger-stall":
            base = [_measure(case, "none", pin, quick) for _ in range(rounds)]
            mb = statistics.median(base)
            baseline = f"{_fmt(mb)} ms (±{(max(base) - min(base)) / mb * 100 if mb else 0:.0f}%)"
            print(f"  logger-stall baseline, same loop logging nothing: {baseline}", flush=True)
    print()
    print(
        "| case | unit | FlowCoro (median, spread) | peer (median, spread) | peer "
        "| ratio: median of rounds (range) |"
    )
    print("|---|---|---|---|---|---|")
    for case, unit, mo, so, mp, sp, ratio, peer_name in rows:
        print(
            f"| {case} | {unit} | {_fmt(mo)} (±{so:.0f}%) | {_fmt(mp)} (±{sp:.0f}%) "
            f"| {peer_name} | {ratio[0]:.2f}x ({ratio[1]:.2f}-{ratio[2]:.2f}) |"
        )
    if baseline:
        print(f"\nlogger-stall baseline (the same loop and ticker, logging nothing): {baseline}")
    print("ratio > 1 means FlowCoro is better (faster, cheaper or shorter stall); spread is")
    print("(max - min) / median over the rounds.")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        sys.exit(worker(sys.argv[2:]))
    sys.exit(main(sys.argv[1:]))
