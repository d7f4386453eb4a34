"""What flowcoro-observe costs a request: ``./tools/dev bench observe [--rounds N] [--duration S]``.

wrk's run-to-run noise here is larger than the 1% budget, so the cost is measured as CPU time
per request of the instrumentation against CPU time per request of the server, in one run:

1. **Macro** (end to end, noisy): ``examples/hello.py`` served on core 0 (``taskset -c 0``),
   ``wrk -t1 -c50`` on core 1 against ``GET /json``, each configuration in turn per round; the
   server's CPU time (utime+stime from /proc) divided by the requests served gives the server's
   CPU per request (kernel included), without observe (``FLOWCORO_PLUGINS_BLOCK=observe``), with
   every built-in instrument on, and with tracing too (SDK, 1% head sampling, spans counted).
2. **In situ** (the instrumentation's cost): the real app and protocol fed ``GET /json`` in
   process through a transport that discards the responses (no kernel, no client). Requests
   are fed from a plain loop callback (``loop.call_soon``), as a socket read is, so every
   request takes the server's real fast path (the handler's first step runs in the read
   callback); a new connection per batch of 4,000 (a connection closes after
   ``max_keepalive_requests`` = 10,000). Best of 40 batches per configuration and round,
   configurations interleaved in each round.
   **Paired** (`paired`): the same in one process, the server's observers switched off and on
   between adjacent batches, the median of 300 paired differences: robust to a neighbour's
   burst, which hits both halves of a pair. Run with tracing at 1% and at 0.1%: the metrics'
   figure is the median of both, tracing's the cost beyond them at each rate.
3. **Micro** (hot loop, precise): observe's ``request_finished`` alone (the compiled recorder
   and its pure-Python twin), the statements flowcoro-http runs for an observer (the start
   read from the recorder's clock, the call of ``request_timed``), and, for comparison,
   prometheus_client's ``Histogram`` ``observe()`` (on a child looked up once, and with
   ``labels(...)`` per request).

The throughput a CPU-bound server keeps is ``server / (server + instrumentation)``; the report
prints it from the macro server cost (median over rounds) and the in situ and micro costs.
Tracing's cost is measured in parts (every request dropped, every request kept: at rate r it is
dropped + r x kept) beside 1% and 0.1%, and the 1% run end to end sends its spans through a
real ``BatchSpanProcessor`` to a counting exporter, which shows the rate kept at that load.
``--instructions`` counts instructions per in-process request by configuration (callgrind):
deterministic, for comparing versions of the code on a busy machine.

wrk is installed with apt-get when missing. ``--serve PORT``, ``--insitu NAME``, ``--micro``,
``--paired`` and ``--count-run N`` are the internal modes of the subprocesses; the in-process
ones live in tools/bench/_observe_inproc.py, this module runs them and reports.
"""

from __future__ import annotations

import sys

from _common import callgrind_instructions, ensure_wrk, free_port
from _observe_inproc import count_run, insitu, micro, paired

if __name__ == "__main__":
    # Run as a script (the server subprocess), this directory comes first on sys.path, where
    # tools/bench/http.py would shadow the standard library's ``http`` package.
    sys.path[:] = [p for p in sys.path if p and not p.rstrip("/").endswith("tools/bench")]

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve()


def _traced(ratio: str) -> dict[str, str]:
    return {
        "FLOWCORO_TRACING": "on",
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": ratio,
    }


CONFIGS: dict[str, dict[str, str]] = {
    "without observe": {"FLOWCORO_PLUGINS_BLOCK": "observe"},
    "observe (all built-ins)": {"FLOWCORO_TRACING": "off"},
    # Spans go through the SDK's BatchSpanProcessor to an exporter that counts them (in the
    # server, see `serve`): its thread's CPU is the server's, and the count shows the rate kept.
    "observe + tracing 1%": {**_traced("0.01"), "BENCH_COUNT_SPANS": "1"},
}


# -- the server subprocess ---------------------------------------------------------------------


def serve(port: int) -> None:

    import uvloop

    sys.path.insert(0, str(ROOT))
    from examples.hello import app
    from flowcoro.net import start_server

    async def main() -> None:
        await app.start()
        if os.environ.get("BENCH_COUNT_SPANS"):
            _count_spans()
        server = await start_server(app.protocol_factory(), host="127.0.0.1", port=port)
        print("ready", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await server.shutdown(1.0)
            await app.stop()

    uvloop.run(main())


def _count_spans() -> None:
    """Export the server's spans through a BatchSpanProcessor (a flush every 100 ms) to an
    exporter that counts server spans; each line of stdout after "ready" is the running count."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
    from opentelemetry.trace import SpanKind

    class Counting(SpanExporter):
        def __init__(self) -> None:
            self.count = 0

        def export(self, spans: object) -> SpanExportResult:
            self.count += sum(s.kind is SpanKind.SERVER for s in spans)  # type: ignore[attr-defined]
            print(self.count, flush=True)
            return SpanExportResult.SUCCESS

    provider = trace.get_tracer_provider()
    provider.add_span_processor(  # type: ignore[attr-defined]
        BatchSpanProcessor(Counting(), schedule_delay_millis=100)
    )


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
        warm = _wrk(wrk, port, 1.0)  # warm up
        before = _cpu_seconds(proc.pid)
        started = time.perf_counter()
        requests = _wrk(wrk, port, duration)
        elapsed = time.perf_counter() - started
        cpu = _cpu_seconds(proc.pid) - before
        spans = -1.0
        if env.get("BENCH_COUNT_SPANS"):
            time.sleep(0.5)  # the last batch (flushed every 100 ms)
            proc.terminate()
            lines = proc.stdout.read().split()
            spans = float(lines[-1]) if lines else 0.0
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
    return {
        "rps": requests / elapsed,
        "cpu_us": cpu / requests * 1e6,
        "spans": spans,
        "requests": float(warm + requests),
    }


# -- instructions (callgrind) ------------------------------------------------------------------


INSTRUCTIONS: dict[str, dict[str, str]] = {
    "without observe": CONFIGS["without observe"],
    "observe (all built-ins)": CONFIGS["observe (all built-ins)"],
    "tracing, every request dropped (ratio 0)": _traced("0"),
    "tracing, every request kept (ratio 1)": _traced("1"),
}


def instructions() -> None:
    """Instructions per in-process ``GET /json`` by configuration, counted by ``valgrind
    --tool=callgrind``: the same for the same code whatever else the machine does (the time
    figures here move by more than the 1% budget). 1,000 and 5,000 requests in two runs (hash
    seed fixed); the difference over 4,000 leaves out start-up. Instructions are not time (a
    clock read is a handful of instructions and tens of nanoseconds), so they compare versions
    of the code, not against the budget."""

    def collected(env: dict[str, str], n: int) -> int:
        return callgrind_instructions("observe", [str(HERE), f"--count-run={n}"], env)

    base = None
    for name, env in INSTRUCTIONS.items():
        per = (collected(env, 5000) - collected(env, 1000)) / 4000
        base = per if base is None else base
        print(f"{name:45s} {per:9,.0f} instructions/request ({per - base:+,.0f})", flush=True)


# -- the report --------------------------------------------------------------------------------


INSITU: dict[str, dict[str, str]] = {
    "without observe": {"FLOWCORO_PLUGINS_BLOCK": "observe"},
    "null observer (HTTP's observer plumbing)": {"FLOWCORO_PLUGINS_BLOCK": "observe"},
    "observe (all built-ins)": CONFIGS["observe (all built-ins)"],
    "observe, pure-Python recorder": {
        **CONFIGS["observe (all built-ins)"],
        "FLOWCORO_OBSERVE_PURE_PYTHON": "1",
    },
    "observe + tracing 1%": _traced("0.01"),
    "observe + tracing 0.1%": _traced("0.001"),
    # The two parts of tracing's cost: cost(rate) = dropped + rate * (kept - dropped).
    "tracing, every request dropped (ratio 0)": _traced("0"),
    "tracing, every request kept (ratio 1)": _traced("1"),
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


def _spread(values: list[float], fmt: str = "{:.2f}") -> str:
    return f"{fmt.format(min(values))}-{fmt.format(max(values))}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench observe")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--micro", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--insitu", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--count-run", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--paired", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="instructions per in-process request by configuration (callgrind)",
    )
    args = parser.parse_args(argv)
    if args.paired:
        print(json.dumps(paired()))
        return 0
    if args.count_run is not None:
        count_run(args.count_run)
        return 0
    if args.instructions:
        instructions()
        return 0
    if args.serve is not None:
        serve(args.serve)
        return 0
    if args.micro:
        print(json.dumps(micro()))
        return 0
    if args.insitu is not None:
        print(insitu(args.insitu))
        return 0
    wrk = ensure_wrk("observe")
    print(f"machine: {os.cpu_count()} cores, {_cpu_model()}; python {sys.version.split()[0]}")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        f"rounds: {args.rounds}; wrk -t1 -c50 -d{args.duration:g}s per configuration and round; "
        "in situ: best of 40 x 4,000 requests per configuration and round; "
        "micro: best of 7 x 300,000 per round"
    )
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in CONFIGS}
    situ: dict[str, list[float]] = {name: [] for name in INSITU}
    micros: list[dict[str, float]] = []
    pairs: list[dict[str, float]] = []
    pairs_low: list[dict[str, float]] = []  # tracing at 0.1%
    names = list(CONFIGS)
    situ_names = list(INSITU)
    for i in range(args.rounds):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:  # rotate who goes first
            runs[name].append(macro_round(wrk, name, args.duration))
        shift = i % len(situ_names)
        for name in situ_names[shift:] + situ_names[:shift]:
            situ[name].append(_insitu_round(name))
        # In its own process on core 0: run.py puts tools/bench first on sys.path (see the top).
        out = subprocess.run(
            ["taskset", "-c", "0", sys.executable, str(HERE), "--micro"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        micros.append(json.loads(out))
        for ratio, into in (("0.01", pairs), ("0.001", pairs_low)):
            out = subprocess.run(
                ["taskset", "-c", "0", sys.executable, str(HERE), "--paired"],
                env={**os.environ, **_traced(ratio)},
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            into.append(json.loads(out))
        print(f"  round {i + 1}/{args.rounds} done", flush=True)

    med = statistics.median
    base_runs = [r["cpu_us"] for r in runs[names[0]]]
    base = med(base_runs)
    print()
    print("End to end, GET /json, server on core 0, wrk on core 1 (noisy: > 1% run to run):")
    print()
    print("| configuration | req/s | spread | server CPU µs/req | spread | CPU vs without |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in names:
        rps = [r["rps"] for r in runs[name]]
        cpu = [r["cpu_us"] for r in runs[name]]
        print(
            f"| {name} | {med(rps):,.0f} | {_spread(rps, '{:,.0f}')} | {med(cpu):.2f} | "
            f"{_spread(cpu)} | {med(cpu) / base * 100:.1f}% |"
        )
    print()
    print("In situ: the real app and protocol fed GET /json in process (fast path, no kernel):")
    print()
    print("| configuration | CPU µs/req | spread | added ns/req (median of per-round) | spread |")
    print("|---|---:|---:|---:|---:|")
    without = situ["without observe"]
    added: dict[str, list[float]] = {}
    for name, values in situ.items():
        # Per round: the difference of two measurements taken moments apart.
        added[name] = [(v - w) * 1000 for v, w in zip(values, without, strict=True)]
        print(
            f"| {name} | {med(values):.3f} | {_spread(values, '{:.3f}')} | "
            f"{med(added[name]):+.0f} | {_spread(added[name], '{:+.0f}')} |"
        )
    print()
    print("Micro (hot loop), ns per request, median over rounds (spread):")
    print()
    print("| what | ns | spread |")
    print("|---|---:|---:|")
    labels = {
        "recorder_timed": "observe's request_timed, compiled recorder (the fast path's call)",
        "recorder": "observe's request_finished, compiled recorder (other paths)",
        "pyrecorder": "observe's request_finished, pure-Python recorder (fallback)",
        "path": "flowcoro-http's fast-path observer statements + compiled request_timed",
        "path_perf_counter": "the same, the start read with time.perf_counter (before)",
        "prom_child": "prometheus_client Histogram child .observe()",
        "prom_labels": "prometheus_client Histogram .labels(3 labels).observe()",
    }
    for name, label in labels.items():
        values = [m[name] for m in micros]
        print(f"| {label} | {med(values):.0f} | {_spread(values, '{:.0f}')} |")
    print()
    insitu_cost = med(added["observe (all built-ins)"]) / 1000
    own_cost = med(situ["observe (all built-ins)"]) - med(
        situ["null observer (HTTP's observer plumbing)"]
    )
    micro_cost = med([m["path"] for m in micros]) / 1000
    metrics = med(situ["observe (all built-ins)"])
    dropped = med(situ["tracing, every request dropped (ratio 0)"]) - metrics
    kept = med(situ["tracing, every request kept (ratio 1)"]) - metrics
    print(
        f"tracing beyond the metrics, in situ (separate runs: the dropped figure is within their "
        f"noise): a dropped request {dropped * 1000:+.0f} ns, a kept one {kept:+.1f} µs (its "
        f"span); at rate r: dropped + r x {kept:.1f} µs per request"
    )
    totals = runs["observe + tracing 1%"]
    spans = [r["spans"] / r["requests"] for r in totals]
    n = sum(r["requests"] for r in totals)
    k = sum(r["spans"] for r in totals)
    z = (k - n * 0.01) / (n * 0.01 * 0.99) ** 0.5  # binomial standard deviations off
    print(
        f"head sampling at 1%, end to end through a BatchSpanProcessor: {k:,.0f} server spans "
        f"exported for {n:,.0f} requests = {k / n:.3%} (expected 1%, z = {z:+.1f};"
        f" per round {_spread([x * 100 for x in spans], '{:.3f}')}%), at "
        f"{med([r['rps'] for r in totals]):,.0f} req/s"
    )
    paired_metrics = [x["metrics"] for x in pairs + pairs_low]
    paired_tracing = [x["tracing"] for x in pairs]
    paired_low = [x["tracing"] for x in pairs_low]
    print(
        "in situ, paired in one process (observers switched off and on between adjacent "
        f"batches; median of 300 pairs per round): every built-in instrument "
        f"{med(paired_metrics):+.0f} ns (rounds {_spread(paired_metrics, '{:+.0f}')}), tracing "
        f"at 1% beyond them {med(paired_tracing):+.0f} ns "
        f"(rounds {_spread(paired_tracing, '{:+.0f}')}), at 0.1% {med(paired_low):+.0f} ns "
        f"(rounds {_spread(paired_low, '{:+.0f}')}); the request itself "
        f"{med([x['off_ns'] for x in pairs]) / 1000:.2f} µs"
    )
    print()
    print(
        f"server CPU per request without observe (wrk, median of {args.rounds}): {base:.2f} µs "
        f"(spread {_spread(base_runs)})"
    )
    for label, cost in (
        ("every built-in instrument, in situ", insitu_cost),
        ("  of which observe's own code (vs a null observer)", own_cost),
        ("every built-in instrument, micro", micro_cost),
        ("every built-in instrument, in situ paired", med(paired_metrics) / 1000),
        ("tracing alone at 1%, in situ paired", med(paired_tracing) / 1000),
        (
            "built-ins + tracing at 1% head sampling, in situ paired",
            (med(paired_metrics) + med(paired_tracing)) / 1000,
        ),
        (
            "built-ins + tracing at 0.1% head sampling, in situ paired",
            (med(paired_metrics) + med(paired_low)) / 1000,
        ),
        (
            "built-ins + tracing at 1% head sampling, in situ",
            med(added["observe + tracing 1%"]) / 1000,
        ),
        (
            "built-ins + tracing at 0.1% head sampling, in situ",
            med(added["observe + tracing 0.1%"]) / 1000,
        ),
    ):
        share = base / (base + max(cost, 0.0))
        print(f"throughput kept, {label}: {base:.2f} / ({base:.2f} + {cost:.3f}) = {share:.2%}")
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
