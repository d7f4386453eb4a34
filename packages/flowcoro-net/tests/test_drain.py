from __future__ import annotations

import asyncio

import pytest
from _net_helpers import Echo, close_writer, roundtrip

from flowcoro.net import BaseProtocol, Connection, ConnectionClosedError, Limits, start_server


async def test_graceful_drain_waits_for_in_flight_handlers() -> None:
    started = asyncio.Event()

    async def handler(conn: Connection) -> None:
        request = await conn.read_until(b"\n")
        started.set()
        await asyncio.sleep(0.3)  # in-flight work when the shutdown begins
        await conn.send(b"done " + request)

    server = await start_server(handler, host="127.0.0.1", port=0, observers=())
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"job\n")
    await started.wait()
    stats = await server.shutdown(drain_timeout=5)
    assert (stats.connections, stats.drained, stats.cut) == (1, 1, 0)
    assert 0.2 < stats.duration < 5
    assert await reader.read() == b"done job\n"
    await close_writer(writer)
    # No new connections once shut down.
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", server.port)


async def test_handlers_are_told_and_can_finish_early() -> None:
    async def handler(conn: Connection) -> None:
        assert not conn.shutdown_requested
        await conn.send(b"streaming\n")
        await conn.wait_shutdown()  # a long-lived stream: ends when told
        assert conn.shutdown_requested
        await conn.wait_shutdown()  # already requested: returns at once
        await conn.send(b"bye\n")

    server = await start_server(handler, host="127.0.0.1", port=0, observers=())
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    assert await reader.readline() == b"streaming\n"
    stats = await server.shutdown(drain_timeout=5)
    assert (stats.drained, stats.cut) == (1, 0)
    assert stats.duration < 1
    assert await reader.read() == b"bye\n"
    await close_writer(writer)


async def test_drain_timeout_cuts_handlers_that_do_not_finish(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cancelled = asyncio.Event()

    async def handler(conn: Connection) -> None:
        await conn.send(b"hi")
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    server = await start_server(handler, host="127.0.0.1", port=0, observers=())
    clients = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(3)]
    for reader, _ in clients:
        assert await reader.readexactly(2) == b"hi"
    stats = await server.shutdown(drain_timeout=0.1)
    assert (stats.connections, stats.drained, stats.cut) == (3, 0, 3)
    assert cancelled.is_set()
    assert "3 of 3 connections cut" in caplog.text
    for _, writer in clients:
        await close_writer(writer)


async def test_idle_connections_close_at_once_and_busy_ones_are_cut() -> None:
    server = await start_server(Echo, host="127.0.0.1", port=0, observers=())
    idle_r, idle_w = await asyncio.open_connection("127.0.0.1", server.port)
    busy_r, busy_w = await asyncio.open_connection("127.0.0.1", server.port)
    assert await roundtrip(busy_r, busy_w, b"recent activity") == b"recent activity"
    await asyncio.sleep(0.05)
    stats = await server.shutdown(drain_timeout=0.2)
    # The quiet one closed at once (drained), the recently active one is cut at the timeout.
    assert (stats.connections, stats.drained, stats.cut) == (2, 1, 1)
    assert await idle_r.read() == b""
    await close_writer(idle_w)
    await close_writer(busy_w)


async def test_shutdown_is_idempotent_and_awaitable_elsewhere() -> None:
    server = await start_server(Echo, host="127.0.0.1", port=0, observers=())
    assert not server.closing
    waiter = asyncio.ensure_future(server.wait_closed())
    first, second = await asyncio.gather(server.shutdown(), server.shutdown())
    assert first == second
    assert await waiter == first
    assert server.closing
    assert await server.shutdown() == first


async def test_protocol_overrides_drive_the_drain() -> None:
    class Request(BaseProtocol):
        """Finishes the current "request" when told, like an HTTP keep-alive connection."""

        busy = False

        def data_received(self, data: bytes) -> None:
            self.active = True
            self.busy = True
            asyncio.get_running_loop().call_later(0.2, self.finish)

        def finish(self) -> None:
            assert self.transport is not None
            self.transport.write(b"response")
            self.busy = False
            if self.shutting_down:
                self.transport.close()

        @property
        def idle(self) -> bool:
            return not self.busy

    server = await start_server(Request, host="127.0.0.1", port=0, observers=())
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"request")
    await asyncio.sleep(0.05)
    stats = await server.shutdown(drain_timeout=5)
    assert (stats.drained, stats.cut) == (1, 0)
    assert await reader.read() == b"response"
    await close_writer(writer)


async def test_base_drain_raises_once_the_connection_is_lost() -> None:
    lost = asyncio.Event()
    protocols: list[BaseProtocol] = []

    class Writer(BaseProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            protocols.append(self)

        def connection_lost(self, exc: Exception | None) -> None:
            super().connection_lost(exc)
            lost.set()

    limits = Limits(write_high_water=1024)
    async with await start_server(
        Writer, host="127.0.0.1", port=0, limits=limits, observers=()
    ) as server:
        _reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        await asyncio.sleep(0.05)
        (proto,) = protocols
        assert proto.peername is not None
        await proto.drain()  # not paused: returns at once
        assert proto.transport is not None
        while not proto.writing_paused:
            proto.transport.write(b"z" * 65536)
        drains = [asyncio.ensure_future(proto.drain()) for _ in range(2)]
        await asyncio.sleep(0)
        proto.transport.abort()
        await lost.wait()
        for fut in drains:
            with pytest.raises(ConnectionClosedError):
                await fut
        with pytest.raises(ConnectionClosedError):
            await proto.drain()
        await close_writer(writer)
