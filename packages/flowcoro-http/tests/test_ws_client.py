"""`connect_ws`: against the `websockets` library's own asyncio server (third-party peer) and
against our server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from _http_helpers import make_app, serving
from websockets.asyncio.server import ServerConnection, serve

from flowcoro.http import WebSocketClosed, connect_ws
from flowcoro.http.ws import WebSocket, WebSocketError, WebSocketHandshakeError


@contextlib.asynccontextmanager
async def peer(**kw: object) -> AsyncIterator[int]:
    async def handler(conn: ServerConnection) -> None:
        async for message in conn:
            if message == "bye":
                await conn.close(4001, "bye now")
                return
            if message == "frag":
                await conn.send(["a", "b", "c"])
                continue
            await conn.send(message)

    async with serve(handler, "127.0.0.1", 0, **kw) as server:  # type: ignore[arg-type]
        yield server.sockets[0].getsockname()[1]


async def test_client_against_websockets_server() -> None:
    async with peer(subprotocols=["v1"]) as port:
        ws = await connect_ws(f"ws://127.0.0.1:{port}/", subprotocols=("v1",))
        try:
            assert ws.subprotocol == "v1"
            assert ws.extensions == ["permessage-deflate"]
            await ws.send("hello")
            assert await ws.receive_text() == "hello"
            await ws.send(b"\x01\x02")
            assert await ws.receive_bytes() == b"\x01\x02"
            await ws.send("frag")
            assert await ws.receive() == "abc"
            await ws.send_fragments([b"x", b"y"])
            assert await ws.receive() == b"xy"
            await ws.ping(b"p")
            await ws.send("bye")
            with pytest.raises(WebSocketClosed) as info:
                await ws.receive()
            assert (info.value.code, info.value.reason) == (4001, "bye now")
            assert ws.close_code == 4001
            assert ws.close_reason == "bye now"
        finally:
            await ws.close()
        assert not ws.open


async def test_client_close_handshake_and_iteration() -> None:
    async with peer() as port:
        ws = await connect_ws(f"ws://127.0.0.1:{port}/", compression=None)
        assert ws.extensions == []
        await ws.send("one")
        received = []
        async for message in ws:
            received.append(message)
            await ws.close()
        assert received == ["one"]
        assert ws.close_code == 1000
        with pytest.raises(WebSocketClosed):
            await ws.send("after close")
        with pytest.raises(WebSocketClosed):
            await ws.ping()


async def test_client_type_errors() -> None:
    async with peer() as port:
        ws = await connect_ws(f"ws://127.0.0.1:{port}/")
        try:
            with pytest.raises(TypeError):
                await ws.send(123)  # type: ignore[arg-type]
            with pytest.raises(ValueError, match="parts"):
                await ws.send_fragments([])
            with pytest.raises(TypeError, match="parts"):
                await ws.send_fragments(["a", b"b"])
            await ws.send("text")
            with pytest.raises(WebSocketError, match="text"):
                await ws.receive_bytes()
            await ws.send(b"bin")
            with pytest.raises(WebSocketError, match="binary"):
                await ws.receive_text()
            assert "OPEN" in repr(ws)
        finally:
            await ws.close()


async def test_client_against_our_server_with_query_and_headers() -> None:
    app = make_app()

    @app.websocket("/echo")
    async def echo(ws: WebSocket) -> None:
        assert ws.request is not None
        await ws.send(
            ws.request.headers.get("x-token", "") + "|" + ws.request.query_string.decode()
        )
        async for message in ws:
            await ws.send(message)

    async with serving(app) as (_, port):
        ws = await connect_ws(f"ws://127.0.0.1:{port}/echo?a=1", headers={"X-Token": "t"})
        try:
            assert await ws.receive() == "t|a=1"
            await ws.send_fragments(["long ", "message"])
            assert await ws.receive() == "long message"
        finally:
            await ws.close()


async def test_handshake_refused_and_bad_urls() -> None:
    app = make_app()

    @app.websocket("/ws", origins=("https://ok.example",))
    async def handler(ws: WebSocket) -> None:  # pragma: no cover - never accepted
        pass

    async with serving(app) as (_, port):
        with pytest.raises(WebSocketHandshakeError) as info:
            await connect_ws(f"ws://127.0.0.1:{port}/ws", origin="https://bad.example")
        assert info.value.status == 403
        with pytest.raises(WebSocketHandshakeError) as info:
            await connect_ws(f"ws://127.0.0.1:{port}/nowhere")
        assert info.value.status == 404
    with pytest.raises(ValueError, match="url"):
        await connect_ws("http://127.0.0.1/")
    with pytest.raises(OSError):
        await connect_ws(f"ws://127.0.0.1:{port}/ws")


async def test_open_timeout() -> None:
    done = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            await reader.read()  # never answers; ends when the client gives up
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
        done.set()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(TimeoutError):
            await connect_ws(f"ws://127.0.0.1:{port}/", open_timeout=0.1)
        await asyncio.wait_for(done.wait(), 5)
    finally:
        server.close()
        await server.wait_closed()


async def test_server_closing_during_handshake() -> None:
    async def slam(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(slam, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises((WebSocketClosed, WebSocketHandshakeError)):
            await connect_ws(f"ws://127.0.0.1:{port}/")
    finally:
        server.close()
        await server.wait_closed()
