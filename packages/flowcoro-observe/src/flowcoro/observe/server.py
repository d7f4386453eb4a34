"""A separate, minimal HTTP/1.1 endpoint for ``/metrics``, ``/healthz`` and ``/readyz``.

Used when ``metrics_port`` is set (scrapes never queue behind application traffic, and the port
can stay private) and by services without flowcoro-http. One request per connection, answered
with ``Connection: close``; the request head is bounded (8 KiB) and must arrive within 5 s.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from flowcoro.core.abc import Component
from flowcoro.observe.health import JSON_CONTENT_TYPE
from flowcoro.observe.observe import Observe

__all__ = ["MetricsServer"]

MAX_HEAD = 8192
HEAD_TIMEOUT = 5.0
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Service Unavailable",
}


class MetricsServer(Component):
    """Serves an `Observe`'s endpoints on ``metrics_host:metrics_port`` (0 picks a free port:
    read `port` after start)."""

    name = "observe-server"
    depends_on = ("observe",)

    def __init__(self, observe: Observe, host: str | None = None, port: int | None = None) -> None:
        self.observe = observe
        self.host = host if host is not None else str(observe.config["metrics_host"])
        self.port = int(port if port is not None else observe.config["metrics_port"])
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, app: Any = None) -> None:
        # Forked workers sharing a metrics directory each bind the port (SO_REUSEPORT): any of
        # them answers a scrape with the sum of all.
        self._server = await asyncio.start_server(
            self._handle,
            self.host,
            self.port,
            limit=MAX_HEAD,
            reuse_port=self.observe.store is not None or None,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            status, body, content_type = await self._answer(reader)
            head = (
                f"HTTP/1.1 {status} {_REASONS.get(status, 'OK')}\r\n"
                f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n"
            )
            writer.write(head.encode("latin-1") + body)
            await writer.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[int, bytes, str]:
        try:
            async with asyncio.timeout(HEAD_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            return 400, b"bad request\n", "text/plain"
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return 400, b"bad request\n", "text/plain"
        method, target = parts[0], parts[1].split("?", 1)[0]
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        config = self.observe.config
        paths = [config["health_path"], config["ready_path"]]
        if config["metrics_enabled"]:
            paths.append(config["metrics_path"])
        if target not in paths:
            return 404, b"not found\n", "text/plain"
        if method != "GET":
            return 405, b"method not allowed\n", "text/plain"
        if target == config["metrics_path"]:
            body, content_type = self.observe.scrape(headers.get("accept"))
            return 200, body, content_type
        if target == config["health_path"]:
            status, body = self.observe.liveness()
        else:
            status, body = await self.observe.readiness()
        return status, body, JSON_CONTENT_TYPE
