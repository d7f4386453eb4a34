"""WebSocket observers (``flowcoro_http_ws_observers``): open, whole messages each way, close,
by route template; a real `websockets` client over real sockets."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from _http_helpers import serving
from websockets.asyncio.client import connect

from flowcoro.core import hookimpl
from flowcoro.core.plugins import Plugins
from flowcoro.http import App
from flowcoro.http.state import ServerState, WebSocketObserver
from flowcoro.http.ws import WebSocket
from flowcoro.http.ws._connection import prepared
from flowcoro.http.ws._observed import ObservedWebSocket


class Recorder(WebSocketObserver):
    def __init__(self, fail: bool = False) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.fail = fail

    def websocket_opened(self, route: str | None) -> None:
        self.events.append(("open", route))
        if self.fail:
            raise RuntimeError("observer bug")

    def websocket_message(self, route: str | None, received: bool, text: bool, size: int) -> None:
        self.events.append(("message", route, received, text, size))
        if self.fail:
            raise RuntimeError("observer bug")

    def websocket_closed(self, route: str | None, code: int) -> None:
        self.events.append(("close", route, code))
        if self.fail:
            raise RuntimeError("observer bug")


class Contrib:
    def __init__(self, *observers: WebSocketObserver) -> None:
        self.observers = list(observers)

    @hookimpl
    def flowcoro_http_ws_observers(self, app: App) -> list[Any]:
        return self.observers


def make(
    *observers: WebSocketObserver, compression: str | None = "deflate"
) -> tuple[App, list[Any]]:
    plugins = Plugins(only=["http", "net"])
    plugins.register(Contrib(*observers), name="contrib", distribution="tests")
    app = App("ws-observed", plugins=plugins, env={})
    kinds: list[Any] = []

    @app.websocket("/chat/{room}", compression=compression)
    async def chat(ws: WebSocket, room: str) -> None:
        kinds.append(type(ws))
        async for message in ws:
            if message == "frags":
                await ws.send_fragments(["ab", "cé"])
            elif message == "prepared":
                ws.write_prepared(prepared(b"xyz"), b"xyz")
            elif message == "bye":
                await ws.close(4001, "bye")
                return
            else:
                await ws.send(message)

    return app, kinds


async def until(predicate: Any) -> None:
    for _ in range(200):
        if predicate():
            return
        await asyncio.sleep(0.01)


async def test_open_messages_close_by_route_template() -> None:
    observer = Recorder()
    app, kinds = make(observer, compression=None)
    async with serving(app) as (_, port):
        async with connect(f"ws://127.0.0.1:{port}/chat/lobby") as client:
            await client.send("héllo")  # 6 bytes of UTF-8
            assert await client.recv() == "héllo"
            await client.send(b"\x00" * 10)
            assert await client.recv() == b"\x00" * 10
            await client.send("frags")
            assert await client.recv() == "abcé"
            await client.send("prepared")
            assert await client.recv() == b"xyz"
        await until(lambda: observer.events[-1][0] == "close")
    route = "/chat/{room}"
    assert kinds == [ObservedWebSocket]
    assert observer.events == [
        ("open", route),
        ("message", route, True, True, 6),
        ("message", route, False, True, 6),
        ("message", route, True, False, 10),
        ("message", route, False, False, 10),
        ("message", route, True, True, 5),
        ("message", route, False, True, 5),  # one message of two fragments
        ("message", route, True, True, 8),
        ("message", route, False, False, 3),  # a prepared frame
        ("close", route, 1000),
    ]


async def test_server_close_code_and_compressed_prepared_frames() -> None:
    observer = Recorder()
    app, _ = make(observer)  # permessage-deflate: write_prepared falls back to send_nowait
    async with serving(app) as (_, port):
        async with connect(f"ws://127.0.0.1:{port}/chat/a") as client:
            await client.send("prepared")
            assert await client.recv() == b"xyz"
            await client.send("bye")
            await client.wait_closed()
        await until(lambda: observer.events[-1][0] == "close")
    messages = [e for e in observer.events if e[0] == "message"]
    assert ("message", "/chat/{room}", False, False, 3) in messages
    assert sum(1 for e in messages if e[2] is False and e[4] == 3) == 1  # reported once
    assert observer.events[-1] == ("close", "/chat/{room}", 4001)


async def test_abnormal_end_is_1006() -> None:
    observer = Recorder()
    app, _ = make(observer)
    async with serving(app) as (_, port):
        client = await connect(f"ws://127.0.0.1:{port}/chat/x")
        await client.send("hi")
        assert await client.recv() == "hi"
        client.transport.abort()
        await until(lambda: observer.events[-1][0] == "close")
    assert observer.events[-1] == ("close", "/chat/{room}", 1006)


async def test_several_observers_and_failing_ones_do_not_touch_the_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    first, second = Recorder(fail=True), Recorder()
    app, _ = make(first, second)
    async with serving(app) as (_, port):
        async with connect(f"ws://127.0.0.1:{port}/chat/y") as client:
            await client.send("hi")
            assert await client.recv() == "hi"
        await until(lambda: second.events and second.events[-1][0] == "close")
    assert [e[0] for e in first.events] == [e[0] for e in second.events]
    assert [e[0] for e in second.events] == ["open", "message", "message", "close"]


async def test_a_single_failing_observer_is_logged_and_the_echo_goes_on() -> None:
    observer = Recorder(fail=True)
    app, _ = make(observer)
    async with serving(app) as (_, port):
        async with connect(f"ws://127.0.0.1:{port}/chat/z") as client:
            await client.send("hi")
            assert await client.recv() == "hi"
        await until(lambda: observer.events[-1][0] == "close")
    assert [e[0] for e in observer.events] == ["open", "message", "message", "close"]


async def test_no_observer_no_observed_class() -> None:
    app, kinds = make()
    async with serving(app) as (_, port), connect(f"ws://127.0.0.1:{port}/chat/q") as client:
        await client.send("hi")
        assert await client.recv() == "hi"
    assert kinds == [WebSocket]
    state = app.wire()
    assert state.ws_observer is None
    assert state.ws_routes == {}


def test_state_without_an_app_has_no_ws_observer() -> None:
    from flowcoro.http.routing import Router

    state = ServerState(Router())
    assert state.ws_observer is None


async def test_asgi_websockets_are_observed_from_the_accept() -> None:
    """WebSockets of an ASGI application (``from_asgi``) are observed too: opened when the
    application accepts, whole messages each way, the close; the route is the bridge's
    template (never the raw path). A connection the application refuses is never opened."""
    from flowcoro.http.asgi import from_asgi

    async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        assert scope["type"] == "websocket"
        assert (await receive())["type"] == "websocket.connect"
        if scope["path"] == "/refused":
            await send({"type": "websocket.close", "code": 1008})
            return
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await send({"type": "websocket.send", "text": message["text"]})
            else:
                await send({"type": "websocket.send", "bytes": message["bytes"]})

    observer = Recorder()
    plugins = Plugins(only=["http", "net"])
    plugins.register(Contrib(observer), name="contrib", distribution="tests")
    app = from_asgi(echo, plugins=plugins, env={})
    async with serving(app) as (_, port):
        with pytest.raises(Exception, match="403"):
            async with connect(f"ws://127.0.0.1:{port}/refused"):
                pass  # pragma: no cover - the handshake is refused
        async with connect(f"ws://127.0.0.1:{port}/rooms/7") as client:
            await client.send("héllo")
            assert await client.recv() == "héllo"
            await client.send(b"\x01\x02")
            assert await client.recv() == b"\x01\x02"
        await until(lambda: bool(observer.events) and observer.events[-1][0] == "close")
    route = "/{path:path}"
    assert observer.events == [
        ("open", route),
        ("message", route, True, True, 6),
        ("message", route, False, True, 6),
        ("message", route, True, False, 2),
        ("message", route, False, False, 2),
        ("close", route, 1000),
    ]
