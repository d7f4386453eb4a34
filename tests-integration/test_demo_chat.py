"""The demo's chat (examples/demo): its page is served and two clients in one room talk.
(The headless-browser test of this page is in test_ws_browser.py.)"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path

import httpx
from websockets.asyncio.client import connect

from flowcoro.net import Limits

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo"


def load_demo() -> object:
    sys.path.insert(0, str(DEMO))
    try:
        spec = importlib.util.spec_from_file_location("demo_web_ws", DEMO / "web.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(DEMO))


async def test_demo_chat_room() -> None:
    app = load_demo().build_app()  # type: ignore[attr-defined]
    server = await app.serve("127.0.0.1", 0, net_limits=Limits(idle_timeout=None))
    port = server.port
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            page = await http.get("/static/chat.html")
            assert page.status_code == 200
            assert "new WebSocket" in page.text
        url = f"ws://127.0.0.1:{port}/ws/chat/lobby"
        async with connect(url) as alice, connect(url) as bob, connect(url[:-5] + "other") as eve:
            await asyncio.sleep(0.05)
            await alice.send("alice: hi")
            assert await asyncio.wait_for(bob.recv(), 5) == "alice: hi"
            assert await asyncio.wait_for(alice.recv(), 5) == "alice: hi"
            await eve.send("eve: anyone?")
            assert await asyncio.wait_for(eve.recv(), 5) == "eve: anyone?"
            await bob.send("bob: hello")
            assert await asyncio.wait_for(alice.recv(), 5) == "bob: hello"
    finally:
        await server.shutdown(2.0)
        await app.stop()
