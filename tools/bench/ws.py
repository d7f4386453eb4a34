"""WebSocket benchmark: flowcoro-http's WebSocket server vs the ``websockets`` library's own
asyncio server, in the same run.

1. Echo: ``--conns`` connections (100) each send ``--messages`` (1,000) messages of 32 bytes
   one at a time and wait for the echo; messages/s = conns x messages / wall time.
2. Broadcast: ``--clients`` (10,000) connections in one room; one control message makes the
   server send one message to all of them; reported: time until the last client has it.

Servers run pinned to core 0 (``taskset -c 0``), the load generator to core 1; both on uvloop.
The load generator is the same for both servers: for echo a minimal raw client (precomputed
masked frames, bytes counted) so that it costs far less than the servers, and the same raw
client for the broadcast members. Compression is not offered, so neither side compresses
32-byte messages. Rounds interleave ours and the peer's.

    .venv/bin/python tools/bench/run.py ws --rounds=5
    (--conns=100 --messages=1000 --clients=10000 --skip-broadcast)
"""

from __future__ import annotations

import sys
from pathlib import Path

from _common import free_port

if __name__ == "__main__":
    # Run as a subprocess: this folder holds http.py, which must not hide the standard library.
    _here = str(Path(__file__).resolve().parent)
    sys.path[:] = [p for p in sys.path if str(Path(p or ".").resolve()) != _here]

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import time

HERE = Path(__file__).resolve()


# -- servers (subprocesses) ---------------------------------------------------------------------


def serve_ours(port: int) -> None:
    import uvloop

    from flowcoro.core.plugins import Plugins
    from flowcoro.core.pubsub import MemoryBroker
    from flowcoro.http import App, Hub, WebSocket
    from flowcoro.net import Limits

    app = App("bench-ws", plugins=Plugins(only=["http", "net"]))
    hub = Hub(MemoryBroker(backlog=10), queue_size=16)

    @app.websocket("/echo", compression=None, ping_interval=None)
    async def echo(ws: WebSocket) -> None:
        async for message in ws:
            await ws.send(message)

    @app.websocket("/room", compression=None, ping_interval=None)
    async def room(ws: WebSocket) -> None:
        async with hub.connect(ws):
            await hub.join(ws, "bench")
            await ws.send("in")
            async for message in ws:
                await hub.publish("bench", message)

    async def main() -> None:
        await hub.start()
        server = await app.serve(
            "127.0.0.1", port, net_limits=Limits(max_connections=30_000, idle_timeout=None)
        )
        print("READY", flush=True)
        await asyncio.Event().wait()
        await server.shutdown(1)  # pragma: no cover - killed

    uvloop.run(main())


def serve_peer(port: int) -> None:
    import logging

    import uvloop
    import websockets
    from websockets.asyncio.server import ServerConnection, serve

    # Clients abort at the end of a round: not worth a traceback per connection.
    logging.getLogger("websockets").setLevel(logging.CRITICAL)

    members: set[ServerConnection] = set()

    async def handler(conn: ServerConnection) -> None:
        if conn.request is not None and conn.request.path == "/room":
            members.add(conn)
            try:
                await conn.send("in")
                async for message in conn:
                    websockets.broadcast(members, message)
            finally:
                members.discard(conn)
            return
        async for message in conn:
            await conn.send(message)

    async def main() -> None:
        async with serve(handler, "127.0.0.1", port, compression=None, ping_interval=None):
            print("READY", flush=True)
            await asyncio.Event().wait()

    uvloop.run(main())


# -- load generator (subprocess) ----------------------------------------------------------------


_HANDSHAKE = (
    "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


class _EchoClient(asyncio.Protocol):
    """A minimal raw client, so the load generator costs far less than the server it drives:
    one precomputed masked frame (a fixed mask key is valid), ping-pong, bytes counted."""

    def __init__(self, messages: int, frame: bytes, echo_size: int) -> None:
        self.messages = messages
        self.frame = frame
        self.echo_size = echo_size
        self.left = messages
        self.pending = 0
        self.head = b""
        self.open = asyncio.get_running_loop().create_future()
        self.done = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(_HANDSHAKE.format(path="/echo").encode())  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        if not self.open.done():
            self.head += data
            if b"\r\n\r\n" in self.head:
                self.open.set_result(None)
            return
        self.pending += len(data)
        while self.pending >= self.echo_size:
            self.pending -= self.echo_size
            self.left -= 1
            if self.left == 0:
                self.done.set_result(None)
                return
            self.transport.write(self.frame)  # type: ignore[union-attr]

    def start(self) -> None:
        self.transport.write(self.frame)  # type: ignore[union-attr]


def load_echo(port: int, conns: int, messages: int) -> None:
    import uvloop

    payload = b"x" * 32
    key = b"\x11\x22\x33\x44"
    frame = bytes([0x82, 0x80 | 32]) + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        clients = []
        for _ in range(conns):
            _, proto = await loop.create_connection(
                lambda: _EchoClient(messages, frame, 2 + 32), "127.0.0.1", port
            )
            await proto.open
            clients.append(proto)
        start = time.perf_counter()
        for c in clients:
            c.start()
        await asyncio.gather(*(c.done for c in clients))
        elapsed = time.perf_counter() - start
        for c in clients:
            c.transport.abort()  # type: ignore[union-attr]
        print(f"RESULT {conns * messages / elapsed:.1f}", flush=True)

    uvloop.run(main())


class _RoomClient(asyncio.Protocol):
    """Raw room member: handshake, the server's "in" frame, then one broadcast frame."""

    def __init__(self, expect: int) -> None:
        loop = asyncio.get_running_loop()
        self.expect = expect
        self.count = 0
        self.head = b""
        self.joined = loop.create_future()
        self.got = loop.create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(_HANDSHAKE.format(path="/room").encode())  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        if not self.joined.done():
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end >= 0 and len(self.head) >= end + 4 + 4:  # the "in" frame: 4 bytes
                self.count = len(self.head) - (end + 8)
                self.joined.set_result(None)
            return
        self.count += len(data)
        if self.count >= self.expect and not self.got.done():
            self.got.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.joined.done():
            self.joined.set_exception(ConnectionError("closed before joining"))


def load_broadcast(port: int, clients: int) -> None:
    import uvloop

    text = b"hello everyone"
    key = b"\x11\x22\x33\x44"
    frame = (
        bytes([0x81, 0x80 | len(text)]) + key + bytes(b ^ key[i % 4] for i, b in enumerate(text))
    )

    async def main() -> None:
        loop = asyncio.get_running_loop()
        sem = asyncio.Semaphore(200)

        async def join() -> _RoomClient:
            # 10,000 handshakes on a busy machine: one that times out is retried.
            for attempt in range(5):
                async with sem:
                    _, proto = await loop.create_connection(
                        lambda: _RoomClient(2 + len(text)), "127.0.0.1", port
                    )
                    try:
                        await asyncio.wait_for(proto.joined, 30)
                        return proto
                    except (TimeoutError, ConnectionError):
                        proto.transport.abort()  # type: ignore[union-attr]
                        if attempt == 4:
                            raise
            raise AssertionError("unreachable")

        members = await asyncio.gather(*(join() for _ in range(clients)))
        await asyncio.sleep(0.5)
        start = time.perf_counter()
        members[0].transport.write(frame)  # type: ignore[union-attr]
        await asyncio.gather(*(m.got for m in members))
        elapsed = time.perf_counter() - start
        print(f"RESULT {elapsed * 1000:.1f}", flush=True)
        for m in members:
            m.transport.abort()  # type: ignore[union-attr]

    uvloop.run(main())


# -- orchestration ------------------------------------------------------------------------------


def _pin(core: int) -> list[str]:
    return ["taskset", "-c", str(core)] if shutil.which("taskset") else []


def _run_round(kind: str, server: str, args: argparse.Namespace) -> float:
    port = free_port()
    srv = subprocess.Popen(
        [*_pin(0), sys.executable, str(HERE), f"--serve={server}", f"--port={port}"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert srv.stdout is not None
        line = srv.stdout.readline()
        if not line.startswith("READY"):
            raise RuntimeError(f"{server} server did not start: {line!r}")
        load = [*_pin(1), sys.executable, str(HERE), f"--load={kind}", f"--port={port}"]
        load += [f"--conns={args.conns}", f"--messages={args.messages}"]
        load += [f"--clients={args.clients}"]
        out = subprocess.run(load, capture_output=True, text=True, timeout=600)
        for row in out.stdout.splitlines():
            if row.startswith("RESULT "):
                return float(row.split()[1])
        raise RuntimeError(f"load generator failed: {out.stderr[-2000:]}")
    finally:
        srv.terminate()
        srv.wait(10)


def _summary(values: list[float]) -> tuple[float, float]:
    med = statistics.median(values)
    spread = (max(values) - min(values)) / med * 100 if med else 0.0
    return med, spread


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench ws")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--conns", type=int, default=100)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--skip-broadcast", action="store_true")
    args = parser.parse_args(argv)
    results: dict[tuple[str, str], list[float]] = {}
    kinds = ["echo"] + ([] if args.skip_broadcast else ["broadcast"])
    for r in range(args.rounds):
        for kind in kinds:
            order = ("ours", "peer") if r % 2 == 0 else ("peer", "ours")
            for server in order:
                value = _run_round(kind, server, args)
                results.setdefault((kind, server), []).append(value)
                print(f"  round {r + 1} {kind:9s} {server:4s} {value:10.1f}", flush=True)
    print()
    print(f"machine: {os.cpu_count()} cores; server on core 0, load on core 1; uvloop")
    print(f"{'test':42s} {'flowcoro':>12s} {'websockets':>12s} {'ratio':>7s}")
    med_o, sp_o = _summary(results[("echo", "ours")])
    med_p, sp_p = _summary(results[("echo", "peer")])
    title = f"echo {args.conns}x{args.messages} x 32 B (msg/s)"
    print(
        f"{title:42s} {med_o:12.0f} {med_p:12.0f} {med_o / med_p:6.2f}x"
        f"   spread {sp_o:.0f}% / {sp_p:.0f}%"
    )
    if not args.skip_broadcast:
        med_o, sp_o = _summary(results[("broadcast", "ours")])
        med_p, sp_p = _summary(results[("broadcast", "peer")])
        title = f"broadcast 1 msg to {args.clients} (ms to last)"
        print(
            f"{title:42s} {med_o:12.1f} {med_p:12.1f} {med_p / med_o:6.2f}x"
            f"   spread {sp_o:.0f}% / {sp_p:.0f}%"
        )
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--serve")
    p.add_argument("--load")
    p.add_argument("--port", type=int)
    p.add_argument("--conns", type=int, default=100)
    p.add_argument("--messages", type=int, default=1000)
    p.add_argument("--clients", type=int, default=10_000)
    a, rest = p.parse_known_args()
    if a.serve == "ours":
        serve_ours(a.port)
    elif a.serve == "peer":
        serve_peer(a.port)
    elif a.load == "echo":
        load_echo(a.port, a.conns, a.messages)
    elif a.load == "broadcast":
        load_broadcast(a.port, a.clients)
    else:
        sys.exit(main(sys.argv[1:]))
