"""`Hub`: rooms, presence, fan-out and slow-client policies, over the in-process broker."""

from __future__ import annotations

import asyncio
import socket

import pytest
from _http_helpers import make_app, serving
from websockets.asyncio.client import connect

from flowcoro.core.pubsub import MemoryBroker
from flowcoro.http import App, Hub, WebSocket
from flowcoro.net import Server


def chat_app(
    hub_box: list[Hub], ws_options: dict[str, object] | None = None, **hub_kw: object
) -> App:
    """Commands: ``join R``, ``leave R``, ``say R text``, ``all text``, ``to ID text``,
    ``who R``, ``id``."""
    app = make_app()

    @app.on_startup
    async def start() -> None:
        hub = Hub(app.pubsub(), **hub_kw)  # type: ignore[arg-type]
        await hub.start()
        hub_box.append(hub)

    @app.on_shutdown
    async def stop() -> None:
        await hub_box[0].aclose()

    @app.websocket("/chat", **(ws_options or {}))
    async def chat(ws: WebSocket) -> None:
        hub = hub_box[0]
        async with hub.connect(ws):
            async for message in ws:
                assert isinstance(message, str)
                cmd, _, rest = message.partition(" ")
                if cmd == "join":
                    await hub.join(ws, rest)
                    await ws.send(f"joined {rest}")
                elif cmd == "leave":
                    await hub.leave(ws, rest)
                    await ws.send(f"left {rest}")
                elif cmd == "say":
                    room, _, text = rest.partition(" ")
                    await hub.publish(room, text)
                elif cmd == "bin":
                    await hub.publish(rest, b"\x00bin")
                elif cmd == "all":
                    await hub.broadcast(rest)
                elif cmd == "to":
                    target, _, text = rest.partition(" ")
                    await hub.send_to(target, text)
                elif cmd == "who":
                    await ws.send(",".join(hub.members(rest)) or "-")
                elif cmd == "rooms":
                    await ws.send(",".join(hub.rooms(ws)) or "-")
                elif cmd == "id":
                    await ws.send(ws.id)

    return app


async def _ask(client: object, text: str) -> object:
    await client.send(text)  # type: ignore[attr-defined]
    return await asyncio.wait_for(client.recv(), 5)  # type: ignore[attr-defined]


async def test_rooms_presence_and_fan_out() -> None:
    box: list[Hub] = []
    app = chat_app(box)
    async with serving(app) as (_, port):
        url = f"ws://127.0.0.1:{port}/chat"
        async with connect(url) as a, connect(url) as b, connect(url) as c:
            id_a, id_b = await _ask(a, "id"), await _ask(b, "id")
            assert await _ask(a, "join lobby") == "joined lobby"
            assert await _ask(b, "join lobby") == "joined lobby"
            assert await _ask(c, "join other") == "joined other"
            assert await _ask(c, "who lobby") == ",".join(sorted([id_a, id_b]))  # type: ignore[list-item]
            assert await _ask(a, "rooms") == "lobby"
            # room: a and b get it, c does not
            await a.send("say lobby hello")
            assert await asyncio.wait_for(a.recv(), 5) == "hello"
            assert await asyncio.wait_for(b.recv(), 5) == "hello"
            await a.send("bin lobby")
            assert await asyncio.wait_for(b.recv(), 5) == b"\x00bin"
            assert await asyncio.wait_for(a.recv(), 5) == b"\x00bin"
            # everyone
            await c.send("all attention")
            for client in (a, b, c):
                assert await asyncio.wait_for(client.recv(), 5) == "attention"
            # one
            await c.send(f"to {id_b} psst")
            assert await asyncio.wait_for(b.recv(), 5) == "psst"
            # leave
            assert await _ask(b, "leave lobby") == "left lobby"
            assert await _ask(c, "who lobby") == id_a
            await c.send("say lobby again")
            assert await asyncio.wait_for(a.recv(), 5) == "again"
            assert await _ask(b, "who nobody") == "-"
            assert await _ask(b, "rooms") == "-"
        # closing removes members
        for _ in range(50):
            if not box[0].members("lobby") and not box[0].members("other"):
                break
            await asyncio.sleep(0.02)
        assert box[0].members("lobby") == []


async def test_slow_member_does_not_slow_the_room_drop_oldest() -> None:
    """A member that stops reading: the others get every message as it comes; its own queue
    is bounded (drop_oldest) and its socket buffer by the write limit."""
    box: list[Hub] = []
    app = chat_app(box, {"send_timeout": 30.0, "compression": None}, queue_size=8)
    async with serving(app) as (_, port):
        url = f"ws://127.0.0.1:{port}/chat"
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(
            b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            + _masked(b"join r")
        )
        try:
            async with connect(url) as fast:
                await _ask(fast, "join r")
                while len(box[0].members("r")) < 2:
                    await asyncio.sleep(0.01)
                payload = "x" * 20_000
                for i in range(300):
                    await box[0].publish("r", f"{i}:{payload}")
                    got = await asyncio.wait_for(fast.recv(), 5)
                    assert isinstance(got, str)
                    assert got.startswith(f"{i}:")
                stats = box[0]._rooms["r"].statistics()
                assert stats.dropped > 0  # the slow member's queue dropped, it did not grow
                fast_id = await _ask(fast, "id")
                slow_ws = next(w for w in box[0]._conns.values() if w.id != fast_id)
                assert slow_ws.transport is not None
                # bounded: the write limit plus the messages written just before it was reached
                assert slow_ws.transport.get_write_buffer_size() <= 64 * 1024 + 2 * 20_100
        finally:
            sock.close()


def _masked(payload: bytes) -> bytes:
    key = b"\x01\x02\x03\x04"
    return (
        bytes([0x81, 0x80 | len(payload)])
        + key
        + bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    )


async def test_disconnect_policy_cuts_a_slow_member_off() -> None:
    """policy="disconnect": a member that stops reading falls queue_size messages behind, is
    disconnected from the room (counted) and its connection closed; the room goes on."""
    box: list[Hub] = []
    app = chat_app(
        box, {"send_timeout": 0.5, "compression": None}, queue_size=4, policy="disconnect"
    )
    async with serving(app) as (_, port):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(
            b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            + _masked(b"join r")
        )
        try:
            async with connect(f"ws://127.0.0.1:{port}/chat") as fast:
                await _ask(fast, "join r")
                while len(box[0].members("r")) < 2:
                    await asyncio.sleep(0.01)
                room = box[0]._rooms["r"]
                for i in range(400):
                    await box[0].publish("r", f"{i}:" + "y" * 20_000)
                    assert (await asyncio.wait_for(fast.recv(), 5)).startswith(f"{i}:")  # type: ignore[union-attr]
                    if room.statistics().disconnected:
                        break
                assert room.statistics().disconnected == 1
                for _ in range(300):  # the slow one leaves the room once its writer gives up
                    if len(box[0].members("r")) == 1:
                        break
                    await asyncio.sleep(0.01)
                assert len(box[0].members("r")) == 1
        finally:
            sock.close()


async def test_hub_validation_and_direct_send_policies() -> None:
    broker = MemoryBroker()
    with pytest.raises(ValueError, match="queue_size"):
        Hub(broker, queue_size=0)
    with pytest.raises(ValueError, match="wait"):
        Hub(broker, policy="wait")
    async with Hub(broker) as hub:
        await hub.start()  # idempotent
        with pytest.raises(TypeError):
            await hub.publish("r", 1)  # type: ignore[arg-type]
    await broker.aclose()

    box: list[Hub] = []
    app = chat_app(box)
    async with serving(app) as (_, port), connect(f"ws://127.0.0.1:{port}/chat") as a:
        with pytest.raises(ValueError, match="room"):
            await box[0].join(next(iter(box[0]._conns.values())), "")
        await box[0].send_to("nobody", "lost")  # unknown id: dropped quietly
        ws = next(iter(box[0]._conns.values()))
        ws._writing_paused = True  # as if its buffer were over the high water mark
        box[0]._direct(ws, "dropped")
        box[0].policy = "disconnect"
        box[0]._direct(ws, "cut")
        with pytest.raises(Exception):  # noqa: B017 - the connection is cut
            await asyncio.wait_for(a.recv(), 5)


_ = Server


async def test_hub_edges_with_a_live_member() -> None:
    """Joining twice is one membership; a room nobody is in and a foreign channel are ignored;
    a message to a closed connection is dropped; closing the hub stops its writers."""
    broker = MemoryBroker()
    hub = Hub(broker, prefix="edge.")
    await hub.start()
    app = make_app()
    done = asyncio.Event()

    @app.websocket("/ws")
    async def member(ws: WebSocket) -> None:
        await hub.join(ws, "r")
        await hub.join(ws, "r")  # idempotent
        await ws.send("ready")
        await done.wait()

    try:
        async with serving(app) as (_, port), connect(f"ws://127.0.0.1:{port}/ws") as client:
            assert await asyncio.wait_for(client.recv(), 5) == "ready"
            assert len(hub.members("r")) == 1
            await hub.publish("empty-room", "nobody")
            await broker.publish("edge.unknown", b"tx")
            await hub.publish("r", "hi")
            assert await asyncio.wait_for(client.recv(), 5) == "hi"
            ws = next(iter(hub._conns.values()))
            await hub.aclose()  # writers cancelled, rooms closed, registry emptied
            assert hub.members("r") == []
            await ws.close()
            hub._direct(ws, "after close")  # dropped quietly
            done.set()
    finally:
        await hub.aclose()
        await broker.aclose()
