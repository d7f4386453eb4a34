"""A chat server process for the two-process Redis fan-out test (run as a script).

``python _ws_worker.py REDIS_URL`` prints ``PORT <n>`` once it listens, then serves until
SIGTERM. Its app uses an explicit plugin host with flowcoro.db's plugin registered, so the
hub's broker is the Redis one whatever FLOWCORO_PLUGINS says."""

from __future__ import annotations

import asyncio
import signal
import sys

import flowcoro.db.plugin
import flowcoro.http.plugin
import flowcoro.net.plugin
from flowcoro.core.plugins import Plugins
from flowcoro.http import App, Hub, WebSocket


def build(redis_url: str) -> tuple[App, list[Hub]]:
    host = Plugins(autoload=False)
    host.register(flowcoro.net.plugin, name="net")
    host.register(flowcoro.http.plugin, name="http")
    host.register(flowcoro.db.plugin, name="db")
    app = App("ws-worker", plugins=host, redis_url=redis_url)
    box: list[Hub] = []

    @app.on_startup
    async def start() -> None:
        broker = app.pubsub()
        hub = Hub(broker, prefix="flowcoro.test.ws.")
        await hub.start()
        box.append(hub)

    @app.on_shutdown
    async def stop() -> None:
        await box[0].aclose()

    @app.websocket("/chat/{room}")
    async def chat(ws: WebSocket, room: str) -> None:
        hub = box[0]
        async with hub.connect(ws):
            await hub.join(ws, room)
            await ws.send(f"joined {type(hub.broker).PLUGIN_NAME}")
            async for message in ws:
                await hub.publish(room, message)

    return app, box


async def main(redis_url: str) -> None:
    app, _ = build(redis_url)
    server = await app.serve("127.0.0.1", 0)
    print(f"PORT {server.port}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.shutdown(2.0)
    await app.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
