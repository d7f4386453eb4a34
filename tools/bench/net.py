"""Echo server on flowcoro-net vs a plain asyncio.Protocol echo server, both on uvloop.

    ./tools/dev bench net [--rounds=7] [--duration=3] [--connections=100] [--size=64]

Each round runs, with the servers pinned to CPU 0 (``taskset -c 0``) and the same load client
(a uvloop protocol-based client holding N connections, each ping-ponging a small message for a
fixed duration) pinned to CPU 1:

- each server alone, in alternating order: messages per second, and the server's CPU time per
  message (from /proc, so that other processes on a shared machine disturb it less);
- both servers at once, sharing CPU 0 in the same window (paired): whatever else the machine does
  hits both alike, so their throughput ratio is the ratio of their per-message costs.

Then an in-process measurement of the data path alone (``data_received`` against a no-op
transport). The table gives medians, the spread (max - min, as % of the median) and ratios.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import free_port

HERE = Path(__file__).resolve()


# -- servers ---------------------------------------------------------------------------------------


def serve(kind: str, port: int) -> None:
    import uvloop

    async def main() -> None:
        loop = asyncio.get_running_loop()
        if kind == "flowcoro":
            from flowcoro.net import BaseProtocol, start_server

            class Echo(BaseProtocol):
                def data_received(self, data: bytes) -> None:
                    self.active = True
                    self.transport.write(data)  # type: ignore[union-attr]

            await start_server(Echo, host="127.0.0.1", port=port, observers=())
        else:

            class PlainEcho(asyncio.Protocol):
                def connection_made(self, transport: asyncio.BaseTransport) -> None:
                    self.transport = transport

                def data_received(self, data: bytes) -> None:
                    self.transport.write(data)  # type: ignore[attr-defined]

            await loop.create_server(PlainEcho, "127.0.0.1", port, backlog=1024)
        print("ready", flush=True)
        await asyncio.Event().wait()

    uvloop.run(main())


# -- load client -----------------------------------------------------------------------------------


def client(port: int, connections: int, duration: float, size: int) -> None:
    import uvloop

    message = b"m" * size
    counter = [0]

    class PingPong(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            self.pending = 0
            self.running = True
            transport.write(message)  # type: ignore[attr-defined]

        def data_received(self, data: bytes) -> None:
            self.pending += len(data)
            while self.pending >= size:
                self.pending -= size
                counter[0] += 1
                if self.running:
                    self.transport.write(message)  # type: ignore[attr-defined]

    async def main() -> None:
        loop = asyncio.get_running_loop()
        protos = []
        for _ in range(connections):
            _t, proto = await loop.create_connection(PingPong, "127.0.0.1", port)
            protos.append(proto)
        await asyncio.sleep(0.5)  # warm up
        start_count, start = counter[0], loop.time()
        print("start", flush=True)  # the driver samples the server's CPU time now
        await asyncio.sleep(duration)
        done, elapsed = counter[0] - start_count, loop.time() - start
        print(f"{done / elapsed:.1f} {done}", flush=True)  # ... and now
        for proto in protos:
            proto.running = False
            proto.transport.close()

    uvloop.run(main())


# -- driver ----------------------------------------------------------------------------------------


def _pin(cpu: int) -> list[str]:
    return ["taskset", "-c", str(cpu)] if shutil.which("taskset") and os.cpu_count() else []


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _round(
    kinds: list[str], connections: int, duration: float, size: int
) -> dict[str, tuple[float, float]]:
    """Run the servers ``kinds`` at the same time (all on CPU 0, their clients on CPU 1); per
    kind: messages per second, and the server's CPU microseconds per message."""
    servers: dict[str, subprocess.Popen[str]] = {}
    clients: dict[str, subprocess.Popen[str]] = {}
    try:
        ports = {}
        for kind in kinds:
            ports[kind] = port = free_port()
            servers[kind] = subprocess.Popen(
                [*_pin(0), sys.executable, str(HERE), "--serve", kind, str(port)],
                stdout=subprocess.PIPE,
                text=True,
            )
        for kind, server in servers.items():
            assert server.stdout is not None
            if server.stdout.readline().strip() != "ready":
                raise RuntimeError(f"{kind} server did not start")
        for kind in kinds:
            args = [str(ports[kind]), str(connections), str(duration), str(size)]
            clients[kind] = subprocess.Popen(
                [*_pin(1), sys.executable, str(HERE), "--client", *args],
                stdout=subprocess.PIPE,
                text=True,
            )
        before = {}
        for kind, client in clients.items():
            assert client.stdout is not None
            if client.stdout.readline().strip() != "start":
                raise RuntimeError("load client did not start")
            before[kind] = _cpu_seconds(servers[kind].pid)
        results = {}
        for kind, client in clients.items():
            assert client.stdout is not None
            rate_text, count_text = client.stdout.readline().split()
            cpu_used = _cpu_seconds(servers[kind].pid) - before[kind]
            results[kind] = (float(rate_text), cpu_used / int(count_text) * 1e6)
        for client in clients.values():
            if client.wait(30) != 0:
                raise RuntimeError("load client failed")
        return results
    finally:
        for proc in [*clients.values(), *servers.values()]:
            if proc.poll() is None:
                proc.terminate()
            proc.wait(10)


def _micro(repeats: int = 7, calls: int = 1_000_000) -> tuple[float, float]:
    """In-process, no I/O: nanoseconds per ``data_received`` of the flowcoro and plain echo
    protocols against a transport whose ``write`` is a C no-op. Immune to other processes'
    network noise; it isolates what the base class adds to the data path."""
    import timeit
    import types

    from flowcoro.net import BaseProtocol

    class Echo(BaseProtocol):
        def data_received(self, data: bytes) -> None:
            self.active = True
            self.transport.write(data)  # type: ignore[union-attr]

    class PlainEcho(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            self.transport.write(data)  # type: ignore[attr-defined]

    transport = types.SimpleNamespace(write=len)
    ours, plain = Echo(), PlainEcho()
    ours.transport = transport  # type: ignore[assignment]
    plain.transport = transport  # type: ignore[attr-defined]
    best: dict[str, float] = {}
    for _ in range(repeats):
        for name, proto in (("flowcoro", ours), ("plain", plain)):
            call, data = proto.data_received, b"m" * 64
            elapsed = timeit.timeit("c(d)", globals={"c": call, "d": data}, number=calls)
            best[name] = min(best.get(name, elapsed), elapsed)
    return best["flowcoro"] / calls * 1e9, best["plain"] / calls * 1e9


def _option(argv: list[str], name: str, default: float) -> float:
    for arg in argv:
        if arg.startswith(f"--{name}="):
            return float(arg.split("=", 1)[1])
    return default


def main(argv: list[str]) -> int:
    rounds = int(_option(argv, "rounds", 7))
    duration = _option(argv, "duration", 3.0)
    connections = int(_option(argv, "connections", 100))
    size = int(_option(argv, "size", 64))
    rates: dict[str, list[float]] = {"flowcoro": [], "plain": []}
    costs: dict[str, list[float]] = {"flowcoro": [], "plain": []}
    paired: list[float] = []
    print(
        f"echo, {connections} connections, {size}-byte messages, {duration:g}s per round, "
        f"{rounds} rounds; server on CPU 0, client on CPU 1; {os.cpu_count()} CPUs, "
        f"Python {sys.version.split()[0]}, load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    for i in range(rounds):
        order = ["flowcoro", "plain"] if i % 2 == 0 else ["plain", "flowcoro"]
        for kind in order:
            rate, cost = _round([kind], connections, duration, size)[kind]
            rates[kind].append(rate)
            costs[kind].append(cost)
            print(
                f"  round {i + 1} {kind:<9} {rate:>12,.0f} msg/s {cost:>8.2f} us CPU/msg",
                flush=True,
            )
            time.sleep(0.2)
        # Paired: both servers share CPU 0 in the same window, so whatever else the machine
        # does hits both alike; the throughput ratio is then the ratio of per-message costs.
        both = _round(order, connections, duration, size)
        paired.append(both["flowcoro"][0] / both["plain"][0])
        print(
            f"  round {i + 1} paired    flowcoro {both['flowcoro'][0]:,.0f} msg/s, plain "
            f"{both['plain'][0]:,.0f} msg/s, ratio {paired[-1]:.3f}",
            flush=True,
        )
    print()
    print(
        "| server | median msg/s | spread | median server CPU per msg | spread "
        "| ratio msg/s | ratio CPU/msg |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    base_rate = statistics.median(rates["plain"])
    base_cost = statistics.median(costs["plain"])
    for kind in ("flowcoro", "plain"):
        rate = statistics.median(rates[kind])
        cost = statistics.median(costs[kind])
        print(
            f"| {kind} | {rate:,.0f} | {_spread(rates[kind]):.0f}% | {cost:.2f} us "
            f"| {_spread(costs[kind]):.0f}% | {rate / base_rate:.3f} | {cost / base_cost:.3f} |"
        )
    ours_ns, plain_ns = _micro()
    print(
        f"\nhot path in-process (no I/O, best of 7 x 1M calls): data_received flowcoro "
        f"{ours_ns:.1f} ns, plain {plain_ns:.1f} ns (+{ours_ns - plain_ns:.1f} ns per read)"
    )
    print(
        f"paired rounds (same window, shared CPU): flowcoro / plain msg/s median "
        f"{statistics.median(paired):.3f}, min {min(paired):.3f}, max {max(paired):.3f}"
    )
    pair_ratios = [f / p for f, p in zip(rates["flowcoro"], rates["plain"], strict=True)]
    print(
        f"\nflowcoro / plain: msg/s {statistics.median(rates['flowcoro']) / base_rate:.3f} "
        f"(median of per-round ratios {statistics.median(pair_ratios):.3f}); server CPU per "
        f"message {statistics.median(costs['flowcoro']) / base_cost:.3f} (lower is better). "
        "Target: msg/s within 10% (>= 0.90). Spread = (max - min) / median across rounds."
    )
    return 0


def _spread(values: list[float]) -> float:
    return (max(values) - min(values)) / statistics.median(values) * 100


if __name__ == "__main__":
    if sys.argv[1] == "--serve":
        serve(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1] == "--client":
        client(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]))
    else:
        sys.exit(main(sys.argv[1:]))
