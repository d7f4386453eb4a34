from __future__ import annotations

import asyncio
import logging
import socket

import pytest
from _net_helpers import Echo, close_writer, reset_socket, roundtrip

from flowcoro.net import (
    Connection,
    ConnectionClosedError,
    Limits,
    start_server,
)


async def test_idle_timeout_closes_quiet_connections_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limits = Limits(idle_timeout=0.2)
    caplog.set_level(logging.INFO, "flowcoro.net")
    async with await start_server(
        Echo, host="127.0.0.1", port=0, limits=limits, observers=()
    ) as server:
        quiet_r, quiet_w = await asyncio.open_connection("127.0.0.1", server.port)
        busy_r, busy_w = await asyncio.open_connection("127.0.0.1", server.port)
        loop = asyncio.get_running_loop()
        started = loop.time()
        # The busy one talks every 50 ms for 0.6 s: three idle timeouts.
        for _ in range(12):
            assert await roundtrip(busy_r, busy_w, b"ping") == b"ping"
            await asyncio.sleep(0.05)
        assert await asyncio.wait_for(quiet_r.read(), 2) == b""  # closed by the server
        assert loop.time() - started < 2
        assert await roundtrip(busy_r, busy_w, b"still here") == b"still here"
        assert server.statistics().idle_closed == 1
        await close_writer(quiet_w)
        await close_writer(busy_w)
    assert "idle for more than 0.2s (idle_timeout)" in caplog.text


async def test_idle_timeout_closes_quiet_stream_handlers() -> None:
    async def handler(conn: Connection) -> None:
        assert await conn.read() == b""

    limits = Limits(idle_timeout=0.1)
    async with await start_server(
        handler, host="127.0.0.1", port=0, limits=limits, observers=()
    ) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        assert await asyncio.wait_for(reader.read(), 2) == b""
        await close_writer(writer)
        assert server.statistics().idle_closed == 1


async def refused_client(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        assert await asyncio.wait_for(reader.read(), 2) == b""
    except ConnectionResetError:
        pass  # refused with an abort: a reset is what the peer should see
    await close_writer(writer)


async def test_connection_limit_refuse(caplog: pytest.LogCaptureFixture) -> None:
    limits = Limits(max_connections=2, overflow="refuse")
    async with await start_server(
        Echo, host="127.0.0.1", port=0, limits=limits, observers=()
    ) as server:
        clients = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(2)]
        for reader, writer in clients:
            assert await roundtrip(reader, writer, b"in") == b"in"
        with caplog.at_level(logging.WARNING, "flowcoro.net"):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            try:
                assert await asyncio.wait_for(reader.read(), 2) == b""
            except ConnectionResetError:
                pass  # refused with an abort: a reset is what the peer should see
            await close_writer(writer)
        assert "refused: max_connections=2 reached" in caplog.text
        stats = server.statistics()
        assert stats.refused == 1
        # More refusals within a second are counted, and summarised in the next log line.
        for _ in range(3):
            await refused_client(server.port)
        assert server.statistics().refused == 4
        assert caplog.text.count("refused: max_connections") == 1
        server._refusal_logged_at -= 1.0  # as if a second went by
        await refused_client(server.port)
        assert "(3 more refused since the last report)" in caplog.text
        assert server.statistics().active == 2
        # The server goes on: a freed slot serves the next client.
        await close_writer(clients[0][1])
        await asyncio.sleep(0.05)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        assert await roundtrip(reader, writer, b"next") == b"next"
        await close_writer(writer)
        await close_writer(clients[1][1])


async def test_connection_limit_pause_queues_in_the_backlog() -> None:
    limits = Limits(max_connections=2)  # overflow="pause" is the default
    async with await start_server(
        Echo, host="127.0.0.1", port=0, limits=limits, observers=()
    ) as server:
        clients = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(2)]
        for reader, writer in clients:
            assert await roundtrip(reader, writer, b"in") == b"in"
        assert server.statistics().paused
        # The kernel completes the handshake, but nobody serves it yet.
        waiting_r, waiting_w = await asyncio.open_connection("127.0.0.1", server.port)
        waiting_w.write(b"queued")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(waiting_r.readexactly(6), 0.2)
        assert server.statistics().active == 2
        await close_writer(clients[0][1])
        assert await asyncio.wait_for(waiting_r.readexactly(6), 2) == b"queued"
        stats = server.statistics()
        assert (stats.accepted, stats.refused, stats.active) == (3, 0, 2)
        assert stats.paused  # at the limit again
        await close_writer(waiting_w)
        await close_writer(clients[1][1])
        await asyncio.sleep(0.1)
        assert not server.statistics().paused


async def test_slow_reader_backpressure_keeps_memory_bounded() -> None:
    high = 64 * 1024
    chunk = 16 * 1024
    limits = Limits(write_high_water=high, write_low_water=high // 4)
    peaks: list[int] = []
    paused_seen = asyncio.Event()
    total = 8 * 1024 * 1024

    async def handler(conn: Connection) -> None:
        data = b"x" * chunk
        sent = 0
        while sent < total:
            conn.write(data)
            sent += chunk
            peaks.append(conn.write_buffer_size)
            if conn.protocol.writing_paused:
                paused_seen.set()
            await conn.drain()
        await conn.aclose()

    async with await start_server(
        handler, host="127.0.0.1", port=0, limits=limits, observers=()
    ) as server:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, ("127.0.0.1", server.port))
        await asyncio.wait_for(paused_seen.wait(), 5)  # the reader has not read a byte yet
        received = 0
        while received < total:
            data = await loop.sock_recv(sock, 65536)
            assert data
            received += len(data)
            await asyncio.sleep(0)  # a slow reader
        sock.close()
    assert max(peaks) <= high + chunk
    assert received == total


async def test_peer_reset_mid_write_fails_the_writer_only() -> None:
    failures: list[BaseException] = []
    writing = asyncio.Event()

    async def handler(conn: Connection) -> None:
        try:
            while True:
                await conn.send(b"y" * 65536)
                writing.set()
        except ConnectionClosedError as exc:
            failures.append(exc)
            raise

    async with await start_server(handler, host="127.0.0.1", port=0, observers=()) as server:
        sock = socket.socket()
        sock.connect(("127.0.0.1", server.port))
        await asyncio.wait_for(writing.wait(), 5)
        reset_socket(sock)
        sock.close()
        for _ in range(100):
            if failures:
                break
            await asyncio.sleep(0.02)
        assert isinstance(failures[0], ConnectionClosedError)
        # The server goes on.
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        assert len(await reader.readexactly(10)) == 10
        await close_writer(writer)


async def test_half_close_reply_after_peer_eof() -> None:
    async def handler(conn: Connection) -> None:
        received = b""
        while chunk := await conn.read():
            received += chunk
        assert conn.at_eof()
        await conn.send(b"got " + str(len(received)).encode())
        await conn.aclose()

    for family_test in ("tcp", "unix"):
        if family_test == "tcp":
            server = await start_server(handler, host="127.0.0.1", port=0, observers=())
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        else:
            import tempfile

            path = tempfile.mktemp(prefix="fcnet", suffix=".sock")
            server = await start_server(handler, uds=path, observers=())
            reader, writer = await asyncio.open_unix_connection(path)
        writer.write(b"a" * 1000)
        writer.write_eof()
        assert await reader.read() == b"got 1000"
        await close_writer(writer)
        await server.shutdown()


async def test_write_buffer_marks_are_applied_to_the_transport() -> None:
    limits = Limits(write_high_water=1000, write_low_water=100)
    async with await start_server(
        Echo, host="127.0.0.1", port=0, limits=limits, observers=()
    ) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        assert await roundtrip(reader, writer, b"w") == b"w"
        (proto,) = server.connections
        assert proto.transport.get_write_buffer_limits() == (100, 1000)
        await close_writer(writer)
