"""WebSocket server: the `websockets` asyncio client is the third-party peer."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct

import pytest
import websockets
from _http_helpers import make_app, serving
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from flowcoro.http.ws import WebSocket, WebSocketClosed, WSOptions


def _echo_app(**options: object):  # type: ignore[no-untyped-def]
    app = make_app()
    seen: dict[str, object] = {}

    @app.websocket("/ws/{room}", **options)
    async def echo(ws: WebSocket, room: str) -> None:
        seen["room"] = room
        seen["subprotocol"] = ws.subprotocol
        seen["extensions"] = ws.extensions
        async for message in ws:
            if message == "close-me":
                await ws.close(4000, "asked")
                return
            if message == "boom":
                raise RuntimeError("handler failed")
            await ws.send(message)
        seen["code"] = ws.close_code

    @app.get("/plain")
    async def plain(request: object) -> str:
        return "plain"

    return app, seen


async def test_echo_text_binary_and_route_params() -> None:
    app, seen = _echo_app()
    async with serving(app) as (_, port):
        async with connect(f"ws://127.0.0.1:{port}/ws/lobby") as client:
            await client.send("héllo")
            assert await client.recv() == "héllo"
            await client.send(b"\x00\x01\xff")
            assert await client.recv() == b"\x00\x01\xff"
        await asyncio.sleep(0.05)
    assert seen["room"] == "lobby"
    assert seen["extensions"] == ["permessage-deflate"]
    assert seen["code"] == 1000


async def test_plain_http_still_served_and_ws_path_without_upgrade() -> None:
    app, _ = _echo_app()
    import httpx

    async with serving(app) as (_, port), httpx.AsyncClient() as http:
        r = await http.get(f"http://127.0.0.1:{port}/plain")
        assert r.text == "plain"
        r = await http.get(f"http://127.0.0.1:{port}/ws/x")
        assert r.status_code == 405


async def test_fragmented_message_both_ways() -> None:
    app, _ = _echo_app()
    async with (
        serving(app) as (_, port),
        connect(f"ws://127.0.0.1:{port}/ws/a", compression=None) as client,
    ):
        await client.send(["frag", "ment", "ed"])
        assert await client.recv() == "fragmented"
        await client.send([b"a", b"b"])
        assert await client.recv() == b"ab"


async def test_close_code_and_reason_from_server() -> None:
    app, _ = _echo_app()
    async with serving(app) as (_, port), connect(f"ws://127.0.0.1:{port}/ws/a") as client:
        await client.send("close-me")
        with pytest.raises(ConnectionClosed) as info:
            await client.recv()
        assert info.value.rcvd is not None
        assert (info.value.rcvd.code, info.value.rcvd.reason) == (4000, "asked")


async def test_handler_error_closes_1011() -> None:
    app, _ = _echo_app()
    async with serving(app) as (_, port), connect(f"ws://127.0.0.1:{port}/ws/a") as client:
        await client.send("boom")
        with pytest.raises(ConnectionClosed) as info:
            await client.recv()
        assert info.value.rcvd is not None
        assert info.value.rcvd.code == 1011


async def test_subprotocol_negotiation() -> None:
    app, seen = _echo_app(subprotocols=("chat.v2", "chat.v1"))
    async with (
        serving(app) as (_, port),
        connect(f"ws://127.0.0.1:{port}/ws/a", subprotocols=["chat.v1", "other"]) as client,
    ):
        assert client.subprotocol == "chat.v1"
        await client.send("x")
        await client.recv()
    assert seen["subprotocol"] == "chat.v1"


async def test_origin_check_rejects_with_403() -> None:
    app, _ = _echo_app(origins=("https://good.example",))
    async with serving(app) as (_, port):
        with pytest.raises(InvalidStatus) as info:
            async with connect(f"ws://127.0.0.1:{port}/ws/a", origin="https://evil.example"):
                pass  # pragma: no cover
        assert info.value.response.status_code == 403
        async with connect(f"ws://127.0.0.1:{port}/ws/a", origin="https://good.example") as client:
            await client.send("ok")
            assert await client.recv() == "ok"


async def test_bad_handshake_is_refused() -> None:
    app, _ = _echo_app()
    async with serving(app) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"GET /ws/a HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
        )
        data = await asyncio.wait_for(reader.read(), 5)
        assert data.startswith(b"HTTP/1.1 400")
        writer.close()
        await writer.wait_closed()


async def test_compression_negotiated_and_compressed_messages_round_trip() -> None:
    app, seen = _echo_app()
    async with (
        serving(app) as (_, port),
        connect(f"ws://127.0.0.1:{port}/ws/a", compression="deflate") as client,
    ):
        text = "abc" * 10_000
        await client.send(text)
        assert await client.recv() == text
    assert seen["extensions"] == ["permessage-deflate"]


async def test_compression_off() -> None:
    app, seen = _echo_app(compression=None)
    async with serving(app) as (_, port), connect(f"ws://127.0.0.1:{port}/ws/a") as client:
        await client.send("x")
        assert await client.recv() == "x"
    assert seen["extensions"] == []


async def test_message_over_max_size_closes_1009() -> None:
    app, _ = _echo_app(max_size=1000)
    async with (
        serving(app) as (_, port),
        connect(f"ws://127.0.0.1:{port}/ws/a", compression=None) as client,
    ):
        await client.send("x" * 1001)
        with pytest.raises(ConnectionClosed) as info:
            await client.recv()
        assert info.value.rcvd is not None
        assert info.value.rcvd.code == 1009


async def test_compressed_bomb_over_max_size_closes_1009() -> None:
    app, _ = _echo_app(max_size=10_000)
    async with (
        serving(app) as (_, port),
        connect(f"ws://127.0.0.1:{port}/ws/a", max_size=None) as client,
    ):
        await client.send(b"\x00" * 1_000_000)  # compresses to ~1 KB
        with pytest.raises(ConnectionClosed) as info:
            await client.recv()
        assert info.value.rcvd is not None
        assert info.value.rcvd.code == 1009


# -- raw frames: what a well-behaved client library cannot send ---------------------------------


def _frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bool = True) -> bytes:
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


async def _raw_ws(
    port: int, path: str = "/ws/a"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101"), head
    assert b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head
    return reader, writer


async def _close_code(reader: asyncio.StreamReader) -> int:
    data = await asyncio.wait_for(reader.read(), 5)
    assert data[0] == 0x88, data
    return int.from_bytes(data[2:4], "big")


async def _shut(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


async def test_invalid_utf8_text_closes_1007() -> None:
    app, _ = _echo_app()
    async with serving(app) as (_, port):
        reader, writer = await _raw_ws(port)
        writer.write(_frame(0x1, b"ok\xff\xfe"))
        assert await _close_code(reader) == 1007
        await _shut(writer)


async def test_unmasked_client_frame_closes_1002() -> None:
    app, _ = _echo_app()
    async with serving(app) as (_, port):
        reader, writer = await _raw_ws(port)
        writer.write(_frame(0x1, b"hello", mask=False))
        assert await _close_code(reader) == 1002
        await _shut(writer)


async def test_oversized_frame_header_closes_1009_without_reading_it() -> None:
    app, _ = _echo_app(max_size=4096)
    async with serving(app) as (_, port):
        reader, writer = await _raw_ws(port)
        # A header that announces 2**40 bytes: refused from the length alone.
        writer.write(bytes([0x82, 0x80 | 127]) + struct.pack("!Q", 2**40) + os.urandom(4))
        assert await _close_code(reader) == 1009
        await _shut(writer)


async def test_frames_in_the_same_packet_as_the_handshake() -> None:
    app, _ = _echo_app(compression=None)
    async with serving(app) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"GET /ws/a HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            + _frame(0x1, b"early")
        )
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        data = await asyncio.wait_for(reader.readexactly(7), 5)
        assert data == b"\x81\x05early"
        await _shut(writer)


# -- heartbeat, backpressure, shutdown ----------------------------------------------------------


async def test_heartbeat_closes_a_dead_peer() -> None:
    app = make_app()
    closed: list[int | None] = []

    @app.websocket("/ws", ping_interval=0.05, ping_timeout=0.1, compression=None)
    async def handler(ws: WebSocket) -> None:
        try:
            await ws.receive()
        except WebSocketClosed as exc:
            closed.append(exc.code)

    async with serving(app) as (_, port):
        # A raw peer that completes the handshake and then never answers anything.
        reader, writer = await _raw_ws(port, "/ws")
        data = await asyncio.wait_for(reader.read(), 5)
        assert data[0] == 0x89  # the ping it never answered
        assert b"\x88" in data  # then the close (1011), then the TCP close
        await _shut(writer)
        await asyncio.sleep(0.05)
    assert closed
    assert closed[0] in (1006, 1011)


async def test_heartbeat_keeps_a_live_peer() -> None:
    app = make_app()

    @app.websocket("/ws", ping_interval=0.02, ping_timeout=0.2)
    async def handler(ws: WebSocket) -> None:
        await asyncio.sleep(0.3)
        await ws.send("still here")

    async with serving(app) as (_, port), connect(f"ws://127.0.0.1:{port}/ws") as client:
        assert await client.recv() == "still here"


async def test_client_that_stops_reading_keeps_server_memory_bounded() -> None:
    app = make_app()
    result: dict[str, object] = {}

    @app.websocket("/ws", write_limit=16 * 1024, send_timeout=0.3, compression=None)
    async def flood(ws: WebSocket) -> None:
        chunk = b"x" * 4096
        sent = 0
        try:
            while True:
                await ws.send(chunk)
                sent += 1
                assert ws.transport is not None
                result["max_buffer"] = max(
                    int(result.get("max_buffer", 0)),  # type: ignore[call-overload]
                    ws.transport.get_write_buffer_size(),
                )
        except WebSocketClosed as exc:
            result["code"] = exc.code
            result["sent"] = sent

    async with serving(app) as (_, port):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        for _ in range(100):
            await asyncio.sleep(0.05)
            if "code" in result:
                break
        sock.close()
    assert result["code"] == 1006
    # Bounded: the write buffer never went far past the high water mark.
    assert int(result["max_buffer"]) <= 16 * 1024 + 4096 + 16  # type: ignore[call-overload]


async def test_read_backpressure_pauses_reading() -> None:
    app = make_app()
    gate = asyncio.Event()
    got: list[object] = []
    sockets: list[WebSocket] = []

    @app.websocket("/ws", max_queue=4, compression=None)
    async def slow(ws: WebSocket) -> None:
        sockets.append(ws)
        await gate.wait()
        got.append(ws._read_paused)
        async for message in ws:
            got.append(message)
            if len(got) == 21:
                await ws.send("done")

    async with (
        serving(app) as (_, port),
        connect(f"ws://127.0.0.1:{port}/ws", compression=None) as client,
    ):
        for i in range(20):
            await client.send(str(i))
        for _ in range(500):  # until the server has stopped reading (bounded wait)
            if sockets and sockets[0]._read_paused:
                break
            await asyncio.sleep(0.01)
        gate.set()
        assert await client.recv() == "done"
    assert got[0] is True
    assert got[1:] == [str(i) for i in range(20)]


async def test_graceful_shutdown_sends_1001() -> None:
    app = make_app()

    @app.websocket("/ws")
    async def wait(ws: WebSocket) -> None:
        async for _ in ws:
            pass  # pragma: no cover

    server = await app.serve("127.0.0.1", 0)
    try:
        async with connect(f"ws://127.0.0.1:{server.port}/ws") as client:
            shutdown = asyncio.ensure_future(server.shutdown(2.0))
            with pytest.raises(ConnectionClosed) as info:
                await client.recv()
            assert info.value.rcvd is not None
            assert info.value.rcvd.code == 1001
            await shutdown
    finally:
        await app.stop()


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="max_size"):
        WSOptions(max_size=0)
    with pytest.raises(ValueError, match="max_queue"):
        WSOptions(max_queue=0)
    with pytest.raises(ValueError, match="write_limit"):
        WSOptions(write_limit=0)
    with pytest.raises(ValueError, match="ping_interval"):
        WSOptions(ping_interval=-1)
    with pytest.raises(ValueError, match="close_timeout"):
        WSOptions(close_timeout=0)
    with pytest.raises(ValueError, match="compression"):
        WSOptions(compression="brotli")
    assert WSOptions().replace(max_queue=3).max_queue == 3
    app = make_app()
    with pytest.raises(TypeError):
        app.websocket("/x")(lambda ws: None)  # type: ignore[arg-type,return-value]


_ = websockets
