"""Helpers shared by the tests: an app on a real socket, and raw-socket clients."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx

from flowcoro.core.plugins import Plugins
from flowcoro.http import App, HTTPLimits
from flowcoro.net import Limits, Server

_PLUGINS: Plugins | None = None


def plugins() -> Plugins:
    """A hermetic host: core, net and http only (no metrics or tracing plugins)."""
    global _PLUGINS
    if _PLUGINS is None:
        _PLUGINS = Plugins(only=["http", "net"])
    return _PLUGINS


def make_app(**limits: Any) -> App:
    return App("test", plugins=plugins(), limits=HTTPLimits(**limits) if limits else None)


@contextlib.asynccontextmanager
async def serving(app: App, drain: float = 2.0) -> AsyncIterator[tuple[Server, int]]:
    server = await app.serve("127.0.0.1", 0, net_limits=Limits(idle_timeout=None))
    try:
        yield server, server.port
    finally:
        await server.shutdown(drain)
        await app.stop()


@contextlib.asynccontextmanager
async def client_of(app: App) -> AsyncIterator[httpx.AsyncClient]:
    """``app`` served on a real socket, and an httpx client for it."""
    async with (
        serving(app) as (_, port),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
    ):
        yield client


async def exchange(port: int, data: bytes, *, timeout: float = 5.0) -> bytes:
    """Send ``data`` on a fresh connection and read until the server closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One response (Content-Length or chunked framing) from a keep-alive connection."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        body = b"".join(parts)
    else:
        body = b""
    return status, headers, body


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


async def still_serves(port: int) -> None:
    """The server answers a fresh, well-formed request."""
    data = await exchange(port, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert status_of(data) == 200, data


@contextlib.contextmanager
def captured_logs() -> Any:
    """Records of the core logger written while the block runs (flushed before reading)."""
    from flowcoro.core import logger as core_logger
    from flowcoro.core._logsinks import CallbackSink

    records: list[dict[str, Any]] = []
    previous = list(core_logger._core.sinks)
    core_logger.configure_logging(sinks=[CallbackSink(records.append)])
    try:
        yield records
        core_logger.flush()
    finally:
        core_logger.configure_logging(sinks=previous)
