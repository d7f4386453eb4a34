"""The ASGI ``websocket`` scope: a real Starlette app (and hand-written ASGI callables) served by
`from_asgi` on a real socket, driven by the `websockets` client."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from _http_helpers import captured_logs, exchange, plugins, serving, status_of
from fastapi import FastAPI
from fastapi import WebSocket as FWebSocket
from starlette.applications import Starlette
from starlette.requests import Request as SRequest
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket as SWebSocket
from starlette.websockets import WebSocketDisconnect
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from flowcoro.http.asgi import from_asgi
from flowcoro.http.ws import WebSocketClosed, WSOptions


def wrap(asgi: Any, **kw: Any) -> Any:
    return from_asgi(asgi, plugins=plugins(), **kw)


def starlette_app(events: list[Any]) -> Starlette:
    async def home(request: SRequest) -> PlainTextResponse:
        return PlainTextResponse(f"home {request.state.greeting}")

    async def echo(ws: SWebSocket) -> None:
        events.append(("scope", dict(ws.scope)))
        offered = ws.scope["subprotocols"]
        await ws.accept(
            subprotocol="chat.v1" if "chat.v1" in offered else None,
            headers=[(b"x-greeting", ws.state.greeting.encode())],
        )
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                events.append(("disconnect", message["code"]))
                return
            if message.get("text") is not None:
                text = message["text"]
                if text == "bye":
                    await ws.close(4001, "see you")
                    events.append(("closed", None))
                    return
                await ws.send_text(text.upper())
            else:
                await ws.send_bytes(message["bytes"][::-1])

    async def refuse(ws: SWebSocket) -> None:
        await ws.close(1008)

    async def listen(ws: SWebSocket) -> None:
        await ws.accept()
        try:
            await ws.receive_text()
        except WebSocketDisconnect as exc:
            events.append(("disconnect", exc.code))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, str]]:
        yield {"greeting": "hello"}

    return Starlette(
        routes=[
            Route("/", home),
            WebSocketRoute("/ws/echo", echo),
            WebSocketRoute("/ws/refuse", refuse),
            WebSocketRoute("/ws/listen", listen),
        ],
        lifespan=lifespan,
    )


async def test_starlette_echo_text_bytes_subprotocol_and_close() -> None:
    events: list[Any] = []
    app = wrap(starlette_app(events))
    async with serving(app) as (_, port):
        url = f"ws://127.0.0.1:{port}/ws/echo?room=a%20b"
        async with connect(url, subprotocols=["other", "chat.v1"]) as client:  # type: ignore[list-item]
            assert client.subprotocol == "chat.v1"
            assert client.response is not None
            assert client.response.headers["x-greeting"] == "hello"
            await client.send("hi")
            assert await client.recv() == "HI"
            await client.send(b"\x01\x02\x03")
            assert await client.recv() == b"\x03\x02\x01"
            await client.send("bye")
            with pytest.raises(ConnectionClosed) as info:
                await client.recv()
            assert info.value.rcvd is not None
            assert info.value.rcvd.code == 4001
            assert info.value.rcvd.reason == "see you"
        # A plain HTTP route of the same application still works.
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            response = await http.get("/")
            assert response.status_code == 200
            assert response.text == "home hello"
    scope = dict(events)["scope"]
    assert scope["type"] == "websocket"
    assert scope["scheme"] == "ws"
    assert scope["path"] == "/ws/echo"
    assert scope["raw_path"] == b"/ws/echo"
    assert scope["query_string"] == b"room=a%20b"
    assert scope["subprotocols"] == ["other", "chat.v1"]
    assert scope["asgi"]["version"] == "3.0"
    assert scope["http_version"] == "1.1"
    assert scope["root_path"] == ""
    assert scope["client"][0] == "127.0.0.1"
    assert (b"upgrade", b"websocket") in scope["headers"]
    assert ("closed", None) in events


async def test_close_before_accept_is_a_403_rejection() -> None:
    app = wrap(starlette_app([]))
    async with serving(app) as (_, port):
        with pytest.raises(InvalidStatus) as info:
            async with connect(f"ws://127.0.0.1:{port}/ws/refuse"):
                pass  # pragma: no cover - the handshake fails
        assert info.value.response.status_code == 403
        # An unknown path: Starlette's router closes before accepting, too.
        with pytest.raises(InvalidStatus) as info:
            async with connect(f"ws://127.0.0.1:{port}/nowhere"):
                pass  # pragma: no cover - the handshake fails
        assert info.value.response.status_code == 403


async def test_client_disconnect_delivers_websocket_disconnect() -> None:
    events: list[Any] = []
    app = wrap(starlette_app(events))
    async with serving(app) as (_, port):
        async with connect(f"ws://127.0.0.1:{port}/ws/listen") as client:
            await client.close(4100, "leaving")
        async with connect(f"ws://127.0.0.1:{port}/ws/echo") as client:
            await client.send("x")
            assert await client.recv() == "X"
            # An abrupt end (no close frame): 1006.
            client.transport.abort()
        for _ in range(200):
            if len([e for e in events if e[0] == "disconnect"]) == 2:
                break
            await asyncio.sleep(0.01)
    assert ("disconnect", 4100) in events
    assert ("disconnect", 1006) in events


def raw_handshake(path: str = "/", extra: str = "") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    ).encode()


class Recorder:
    """A hand-written ASGI app whose websocket behaviour is a coroutine given per test."""

    def __init__(self, behaviour: Any) -> None:
        self.behaviour = behaviour
        self.errors: list[BaseException] = []
        self.done = asyncio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            message = await receive()
            await send({"type": "lifespan.startup.complete"})
            message = await receive()
            assert message["type"] == "lifespan.shutdown"
            await send({"type": "lifespan.shutdown.complete"})
            return
        assert scope["type"] == "websocket"
        try:
            assert await receive() == {"type": "websocket.connect"}
            await self.behaviour(receive, send)
        except BaseException as exc:
            self.errors.append(exc)
            raise
        finally:
            self.done.set()


async def test_send_after_close_raises_an_oserror_and_messages_are_checked() -> None:
    seen: dict[str, Any] = {}

    async def behaviour(receive: Any, send: Any) -> None:
        with pytest.raises(RuntimeError, match=r"before websocket\.accept"):
            await send({"type": "websocket.send", "text": "early"})
        with pytest.raises(TypeError, match="subprotocol"):
            await send({"type": "websocket.accept", "subprotocol": 5})
        await send({"type": "websocket.accept", "headers": [(b"sec-websocket-protocol", b"x")]})
        with pytest.raises(RuntimeError, match="sent twice"):
            await send({"type": "websocket.accept"})
        with pytest.raises(RuntimeError, match="unexpected message type"):
            await send({"type": "http.response.start"})
        with pytest.raises(ValueError, match="'text' or 'bytes'"):
            await send({"type": "websocket.send"})
        seen["first"] = await receive()
        await send({"type": "websocket.close", "code": 1000})
        with pytest.raises(OSError):
            await send({"type": "websocket.send", "text": "late"})
        with pytest.raises(WebSocketClosed):
            await send({"type": "websocket.close"})
        seen["after"] = await receive()

    asgi = Recorder(behaviour)
    async with serving(wrap(asgi)) as (_, port):
        async with connect(f"ws://127.0.0.1:{port}/") as client:
            assert client.subprotocol is None
            await client.send(b"data")
            with pytest.raises(ConnectionClosed):
                await client.recv()
        await asyncio.wait_for(asgi.done.wait(), 5)
    assert not asgi.errors
    assert seen["first"] == {"type": "websocket.receive", "bytes": b"data"}
    assert seen["after"]["type"] == "websocket.disconnect"
    assert seen["after"]["code"] == 1000


async def test_app_failures_before_and_after_accept() -> None:
    async def crash_before(receive: Any, send: Any) -> None:
        raise RuntimeError("boom before")

    async def crash_after(receive: Any, send: Any) -> None:
        await send({"type": "websocket.accept"})
        raise RuntimeError("boom after")

    async def no_answer(receive: Any, send: Any) -> None:
        return

    async def returns_open(receive: Any, send: Any) -> None:
        await send({"type": "websocket.accept"})

    with captured_logs() as records:
        async with serving(wrap(Recorder(crash_before))) as (_, port):
            assert status_of(await exchange(port, raw_handshake())) == 500
        async with serving(wrap(Recorder(no_answer))) as (_, port):
            assert status_of(await exchange(port, raw_handshake())) == 500
        for behaviour, code in ((crash_after, 1011), (returns_open, 1000)):
            async with (
                serving(wrap(Recorder(behaviour))) as (_, port),
                connect(f"ws://127.0.0.1:{port}/") as client,
            ):
                with pytest.raises(ConnectionClosed) as info:
                    await client.recv()
                assert info.value.rcvd is not None
                assert info.value.rcvd.code == code
    names = [r.get("event") or r.get("message") for r in records]
    assert names.count("asgi.websocket_app_error") == 2, records
    assert "asgi.websocket_no_handshake" in names


async def test_bad_handshake_never_reaches_the_app() -> None:
    async def never(receive: Any, send: Any) -> None:  # pragma: no cover - not called
        raise AssertionError("the application ran")

    asgi = Recorder(never)
    async with serving(wrap(asgi)) as (_, port):
        bad = raw_handshake().replace(b"Sec-WebSocket-Version: 13", b"Sec-WebSocket-Version: 8")
        assert status_of(await exchange(port, bad)) == 400
    assert not asgi.done.is_set()


async def test_client_gone_before_accept_and_early_frames() -> None:
    seen: list[Any] = []

    async def slow_accept(receive: Any, send: Any) -> None:
        # Waiting for the next message while undecided returns once the client has left.
        seen.append(await receive())
        try:
            await send({"type": "websocket.accept", "subprotocol": "p1"})
        except OSError as exc:
            seen.append(exc)

    # The client leaves while the application has not decided: receive reports the
    # disconnect, the accept raises.
    asgi = Recorder(slow_accept)
    async with serving(wrap(asgi)) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(raw_handshake())
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        await asyncio.wait_for(asgi.done.wait(), 5)
    assert seen[0] == {"type": "websocket.disconnect", "code": 1006, "reason": ""}
    assert isinstance(seen[1], OSError)

    # A frame sent before the 101 (not allowed, but kept) is read once the app accepts.
    received: list[Any] = []

    async def accept_then_read(receive: Any, send: Any) -> None:
        waiting = asyncio.ensure_future(receive())  # waits for the decision
        await asyncio.sleep(0.05)
        await send({"type": "websocket.accept"})
        received.append(await waiting)
        await send({"type": "websocket.close"})

    asgi = Recorder(accept_then_read)
    async with serving(wrap(asgi)) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        mask = b"\x00\x00\x00\x00"
        writer.write(raw_handshake() + b"\x81\x82" + mask + b"hi")
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert status_of(head) == 101
        assert await asyncio.wait_for(reader.readexactly(4), 5) == b"\x88\x02\x03\xe8"  # 1000
        await asyncio.wait_for(asgi.done.wait(), 5)
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    assert received == [{"type": "websocket.receive", "text": "hi"}]


async def test_too_many_early_bytes_cut_the_connection() -> None:
    async def wait(receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.disconnect"

    asgi = Recorder(wait)
    async with serving(wrap(asgi, websocket=WSOptions(compression=None))) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(raw_handshake(extra="Sec-WebSocket-Protocol: a, b\r\n"))
        writer.write(b"\x82\x7f" + (70_000).to_bytes(8, "big") + b"\0" * 4 + b"x" * 70_000)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
        await asyncio.wait_for(asgi.done.wait(), 5)
    assert not asgi.errors


async def test_shutdown_closes_open_asgi_websockets_with_1001() -> None:
    result: list[Any] = []

    async def hold(receive: Any, send: Any) -> None:
        await send({"type": "websocket.accept"})
        result.append(await receive())

    asgi = Recorder(hold)
    app = wrap(asgi)
    async with serving(app) as (_, port):
        client = await connect(f"ws://127.0.0.1:{port}/")
    with pytest.raises(ConnectionClosed):
        await client.recv()
    await client.close()
    assert result == [
        {"type": "websocket.disconnect", "code": 1001, "reason": "server shutting down"}
    ]


async def test_fastapi_websocket_route() -> None:
    # FastAPI resolves the (string) annotations in the module's globals: imports at the top.
    api = FastAPI()

    @api.websocket("/ws/{name}")
    async def greet(ws: FWebSocket, name: str) -> None:
        await ws.accept()
        text = await ws.receive_text()
        await ws.send_json({"name": name, "text": text})
        await ws.close()

    async with (
        serving(wrap(api)) as (_, port),
        connect(f"ws://127.0.0.1:{port}/ws/ada") as client,
    ):
        await client.send("hello")
        assert await client.recv() == '{"name":"ada","text":"hello"}'
        with pytest.raises(ConnectionClosed):
            await client.recv()


async def test_another_upgrade_is_an_http_request() -> None:
    # curl --http2 on cleartext sends `Upgrade: h2c`: the ASGI app answers it over HTTP/1.1.
    app = wrap(starlette_app([]))
    async with serving(app) as (_, port):
        data = await exchange(
            port,
            b"GET / HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\n"
            b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n",
        )
    assert status_of(data) == 200
    assert data.endswith(b"home hello")


async def test_send_to_a_gone_client_ends_the_app_quietly() -> None:
    async def write_after_disconnect(receive: Any, send: Any) -> None:
        await send({"type": "websocket.accept"})
        assert (await receive())["type"] == "websocket.disconnect"
        await send({"type": "websocket.send", "bytes": b"too late"})  # raises WebSocketClosed

    asgi = Recorder(write_after_disconnect)
    with captured_logs() as records:
        async with serving(wrap(asgi)) as (_, port):
            async with connect(f"ws://127.0.0.1:{port}/"):
                pass
            await asyncio.wait_for(asgi.done.wait(), 5)
    assert [type(e) for e in asgi.errors] == [WebSocketClosed]
    names = [r.get("event") or r.get("message") for r in records]
    assert "asgi.websocket_app_error" not in names
