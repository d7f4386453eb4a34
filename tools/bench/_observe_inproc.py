"""The in-process measurements of ``bench observe`` (see tools/bench/observe.py, which runs each
in a subprocess of its own): examples/hello.py's app and protocol fed ``GET /json`` through a
transport that discards the answers, with no kernel and no client.

- `insitu`: CPU µs per request, best of many batches (one configuration per process);
- `paired`: what the observers add, their switches flipped between adjacent batches of one
  process (robust to a noisy neighbour);
- `micro`: the per-request calls in a hot loop, with prometheus_client's for comparison;
- `count_run`: requests and nothing else, for callgrind.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
import timeit
from collections.abc import Callable
from pathlib import Path

from _common import Sink

ROOT = Path(__file__).resolve().parents[2]

# What the in-process measurements feed the server (through `Sink`, which discards the answers).
REQUEST = b"GET /json HTTP/1.1\r\nHost: bench\r\nUser-Agent: wrk\r\n\r\n"


# -- the in-situ measurement -------------------------------------------------------------------


def insitu(mode: str, reps: int = 40, requests: int = 4000) -> float:
    """CPU µs per ``GET /json`` of the real app and protocol, fed requests in process through a
    transport that discards the responses. Best of ``reps`` batches."""
    if mode.startswith("tracing, every request kept"):  # ~60 µs a request: fewer of them
        reps, requests = 8, 1000

    import uvloop

    sys.path.insert(0, str(ROOT))
    from examples.hello import app

    if mode.startswith("null observer"):

        class Null:
            """What flowcoro-http's observer plumbing costs: a request_finished doing nothing."""

            def request_finished(self, *args: object) -> None:
                pass

            def request_timed(self, *args: object) -> None:
                pass

        app.add_observer(Null())

    async def main() -> float:
        await app.start()
        factory = app.protocol_factory()
        loop = asyncio.get_running_loop()

        def batch(n: int, done: asyncio.Future[float]) -> None:
            # A plain callback, as a socket read is: no task is current, the fast path runs.
            proto = factory()
            proto.connection_made(Sink())
            started = time.process_time()
            for _ in range(n):
                proto.data_received(REQUEST)
            elapsed = time.process_time() - started
            proto.connection_lost(None)
            done.set_result(elapsed)

        async def timed(n: int) -> float:
            done: asyncio.Future[float] = loop.create_future()
            loop.call_soon(batch, n, done)
            return await done

        await timed(1000)  # warm up
        best = float("inf")
        for _ in range(reps):
            best = min(best, await timed(requests) / requests * 1e6)
            await asyncio.sleep(0)  # let anything a handler scheduled run
        await app.stop()
        return best

    return uvloop.run(main())


# -- in situ, paired within one process ------------------------------------------------------


def paired(pairs: int = 300, batch: int = 1000) -> dict[str, float]:
    """Nanoseconds per ``GET /json`` that observe adds, in situ, robust to a noisy machine: one
    process serves examples/hello.py (observe loaded, tracing as the environment says) and
    switches the server's observers off and on between batches of ``batch`` requests on the
    same connection (``ServerState.watched`` and ``on_enter``: exactly the tests the protocol
    makes), alternating which goes first; the figure is the median over ``pairs`` of the
    difference of two adjacent batches, so a burst from a neighbour hits both sides of a pair.
    Returns the metrics' cost, and tracing's beyond it when tracing is on."""
    import gc

    import uvloop

    sys.path.insert(0, str(ROOT))
    from examples.hello import app

    async def main() -> dict[str, float]:
        await app.start()
        state = app.wire()
        state.max_keepalive_requests = 10**9  # one connection for the whole run
        watched, on_enter = state.watched, state.on_enter
        modes = {"off": (False, None), "metrics": (watched, None), "all": (watched, on_enter)}
        names = ["off", "metrics"] + (["all"] if on_enter is not None else [])
        loop = asyncio.get_running_loop()
        done: asyncio.Future[dict[str, float]] = loop.create_future()

        def run() -> None:  # a plain callback, as a socket read is: the fast path
            proto = app.protocol_factory()()
            proto.connection_made(Sink())
            feed = proto.data_received
            clock = time.process_time

            def timed(name: str) -> float:
                state.watched, state.on_enter = modes[name]
                started = clock()
                for _ in range(batch):
                    feed(REQUEST)
                return (clock() - started) / batch * 1e9

            for name in names * 3:
                timed(name)  # warm up
            diffs: dict[str, list[float]] = {"metrics": [], "tracing": []}
            for i in range(pairs):
                order = names if i % 2 else names[::-1]
                got = {name: timed(name) for name in order}
                diffs["metrics"].append(got["metrics"] - got["off"])
                if "all" in got:
                    diffs["tracing"].append(got["all"] - got["metrics"])
            state.watched, state.on_enter = watched, on_enter
            proto.connection_lost(None)
            out = {k: statistics.median(v) for k, v in diffs.items() if v}
            out["off_ns"] = timed("off")
            done.set_result(out)

        loop.call_soon(run)
        result = await done
        await app.stop()
        return result

    gc.collect()
    gc.freeze()
    return uvloop.run(main())


# -- the micro measurement ---------------------------------------------------------------------


def micro(repeat: int = 7, number: int = 300_000) -> dict[str, float]:
    """Nanoseconds per call of observe's per-request work and of what it is compared with."""
    from time import perf_counter

    import prometheus_client

    from flowcoro.observe._pyrecorder import Recorder as PyRecorder
    from flowcoro.observe.httpmetrics import Recorder
    from flowcoro.observe.instruments import DEFAULT_BUCKETS

    class Req:
        def __init__(self) -> None:
            self.method = "GET"
            self.route = "/json"
            self._started = 0.0

    from flowcoro.http.routing import Router
    from flowcoro.http.state import ServerState

    req = Req()
    state = ServerState(Router())  # the real (slotted) state the protocol reads
    state.watched = True

    def plumbing(timed: object, clock: object) -> object:
        # The statements flowcoro-http's fast path runs for observers (_connection._start).
        state.on_timed = timed  # type: ignore[assignment]
        state.clock = clock  # type: ignore[assignment]

        def one() -> None:
            watched = state.watched
            if watched:
                clock = state.clock
                started = clock()
            else:
                started = 0.0
            if watched:
                timed = state.on_timed
                try:
                    timed(req, req.route, req.method, 200, started)  # type: ignore[arg-type]
                except Exception:
                    raise

        return one

    def unwatched() -> None:
        watched = not state.watched
        if watched:
            pass
        else:
            started = 0.0  # noqa: F841 - as the server does
        if watched:
            pass

    compiled = Recorder(DEFAULT_BUCKETS).request_finished
    timing = Recorder(DEFAULT_BUCKETS)
    compiled_timed = timing.request_timed
    python = PyRecorder(DEFAULT_BUCKETS).request_finished
    registry = prometheus_client.CollectorRegistry()
    histogram = prometheus_client.Histogram(
        "bench_seconds",
        "bench",
        ["method", "route", "klass"],
        registry=registry,
        buckets=DEFAULT_BUCKETS,
    )
    child = histogram.labels("GET", "/json", "2xx")
    cases: dict[str, Callable[[], object]] = {
        "empty": lambda: None,
        "recorder": lambda: compiled(req, "/json", 200, 0.0003),
        "recorder_timed": lambda: compiled_timed(req, "/json", "GET", 200, 0.0),
        "pyrecorder": lambda: python(req, "/json", 200, 0.0003),
        "prom_child": lambda: child.observe(0.0003),
        "prom_labels": lambda: histogram.labels("GET", "/json", "2xx").observe(0.0003),
        "unwatched": unwatched,
        "path": plumbing(compiled_timed, timing.clock),  # type: ignore[dict-item]
        "path_perf_counter": plumbing(compiled_timed, perf_counter),  # type: ignore[dict-item]
    }
    best = {
        name: min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e9
        for name, fn in cases.items()
    }
    skip = ("empty", "path", "path_perf_counter", "unwatched")
    out = {name: best[name] - best["empty"] for name in cases if name not in skip}
    out["path"] = best["path"] - best["unwatched"]
    out["path_perf_counter"] = best["path_perf_counter"] - best["unwatched"]
    return out


# -- what --instructions counts under callgrind ---------------------------------------------------


def count_run(n: int) -> None:
    """Feed ``n`` in-process ``GET /json`` to examples/hello.py (observe as the environment
    configures it) and nothing else: what `instructions` runs under callgrind."""

    import uvloop

    sys.path.insert(0, str(ROOT))
    from examples.hello import app

    async def main() -> None:
        await app.start()
        factory = app.protocol_factory()
        done = asyncio.get_running_loop().create_future()

        def feed() -> None:  # a plain callback, as a socket read is: the fast path
            proto = factory()
            proto.connection_made(Sink())
            for _ in range(n):
                proto.data_received(REQUEST)
            proto.connection_lost(None)
            done.set_result(None)

        asyncio.get_running_loop().call_soon(feed)
        await done
        await app.stop()

    uvloop.run(main())
