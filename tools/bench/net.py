"""Echo server on flowcoro-net vs a plain asyncio.Protocol echo server, both on uvloop.

    ./tools/dev bench net [--rounds=5] [--duration=5] [--connections=100] [--size=64]

Each round starts one server pinned to CPU 0 (``taskset -c 0``) and one load client pinned to
CPU 1: a uvloop protocol-based client holding N connections, each ping-ponging a small message
for a fixed duration. Rounds interleave the two servers (alternating which goes first). The table
gives the median messages per second, the spread (min-max across rounds, as % of the median) and
the ratio flowcoro / plain.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

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
        await asyncio.sleep(duration)
        done, elapsed = counter[0] - start_count, loop.time() - start
        for proto in protos:
            proto.running = False
            proto.transport.close()
        print(f"{done / elapsed:.1f}", flush=True)

    uvloop.run(main())


# -- driver ----------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _pin(cpu: int) -> list[str]:
    return ["taskset", "-c", str(cpu)] if shutil.which("taskset") and os.cpu_count() else []


def _round(kind: str, connections: int, duration: float, size: int) -> float:
    port = _free_port()
    server = subprocess.Popen(
        [*_pin(0), sys.executable, str(HERE), "--serve", kind, str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != "ready":
            raise RuntimeError(f"{kind} server did not start")
        out = subprocess.run(
            [
                *_pin(1),
                sys.executable,
                str(HERE),
                "--client",
                str(port),
                str(connections),
                str(duration),
                str(size),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        return float(out.stdout.strip().splitlines()[-1])
    finally:
        server.terminate()
        server.wait(10)


def _option(argv: list[str], name: str, default: float) -> float:
    for arg in argv:
        if arg.startswith(f"--{name}="):
            return float(arg.split("=", 1)[1])
    return default


def main(argv: list[str]) -> int:
    rounds = int(_option(argv, "rounds", 5))
    duration = _option(argv, "duration", 5.0)
    connections = int(_option(argv, "connections", 100))
    size = int(_option(argv, "size", 64))
    results: dict[str, list[float]] = {"flowcoro": [], "plain": []}
    print(
        f"echo, {connections} connections, {size}-byte messages, {duration:g}s per round, "
        f"{rounds} rounds; server on CPU 0, client on CPU 1; {os.cpu_count()} CPUs, "
        f"Python {sys.version.split()[0]}",
        flush=True,
    )
    for i in range(rounds):
        order = ["flowcoro", "plain"] if i % 2 == 0 else ["plain", "flowcoro"]
        for kind in order:
            rate = _round(kind, connections, duration, size)
            results[kind].append(rate)
            print(f"  round {i + 1} {kind:<9} {rate:>12,.0f} msg/s", flush=True)
            time.sleep(0.2)
    print()
    print("| server | median msg/s | spread (min-max) | ratio |")
    print("|---|---:|---:|---:|")
    plain = statistics.median(results["plain"])
    for kind in ("flowcoro", "plain"):
        values = results[kind]
        med = statistics.median(values)
        spread = (max(values) - min(values)) / med * 100
        print(f"| {kind} | {med:,.0f} | {spread:.1f}% | {med / plain:.3f} |")
    ratio = statistics.median(results["flowcoro"]) / plain
    print(f"\nflowcoro / plain = {ratio:.3f} (target >= 0.90)")
    return 0


if __name__ == "__main__":
    if sys.argv[1] == "--serve":
        serve(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1] == "--client":
        client(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]))
    else:
        sys.exit(main(sys.argv[1:]))
