from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from _net_helpers import reset_socket

from flowcoro.core.deadline import deadline
from flowcoro.core.errors import DeadlineExceeded
from flowcoro.net import (
    ConnectError,
    Connection,
    ConnectionClosedError,
    ConnectTimeout,
    IncompleteReadError,
    InvalidLimit,
    LimitExceeded,
    Limits,
    NetError,
    ReadTimeout,
    Server,
    WriteTimeout,
    connect,
    start_server,
)


@asynccontextmanager
async def serving(
    handler: Callable[[Connection], Awaitable[None]], limits: Limits | None = None
) -> AsyncIterator[Server]:
    server = await start_server(handler, host="127.0.0.1", port=0, limits=limits, observers=())
    try:
        yield server
    finally:
        await server.shutdown(1)


async def echo_lines(conn: Connection) -> None:
    while True:
        try:
            line = await conn.read_until(b"\n")
        except IncompleteReadError:
            return
        await conn.send(line)


async def test_read_variants() -> None:
    async def handler(conn: Connection) -> None:
        await conn.send(b"hello world\nexact12bytes!tail")
        conn.write_eof()
        assert await conn.read() == b""

    async with serving(handler) as server, await connect("127.0.0.1", server.port) as conn:
        assert await conn.read_until(b"\n") == b"hello world\n"
        assert await conn.read_exactly(12) == b"exact12bytes"
        assert await conn.read_exactly(0) == b""
        assert await conn.read(3) == b"!ta"
        assert await conn.read() == b"il"
        assert await conn.read() == b""
        assert conn.at_eof()
        with pytest.raises(IncompleteReadError) as info:
            await conn.read_exactly(1)
        assert info.value.partial == b""
        with pytest.raises(IncompleteReadError):
            await conn.read_until(b"\n")
        assert conn.sockname[0] == "127.0.0.1"
        assert conn.peername[1] == server.port
        assert "open" in repr(conn)
    assert conn.closed
    assert "closed" in repr(conn)
    assert conn.get_extra_info("peername") is not None  # kept by the closed transport
    await conn.aclose()  # idempotent


async def test_partial_data_before_eof_is_reported() -> None:
    async def handler(conn: Connection) -> None:
        await conn.send(b"no newline")

    async with serving(handler) as server, await connect("127.0.0.1", server.port) as conn:
        with pytest.raises(IncompleteReadError) as info:
            await conn.read_until(b"\n")
        assert info.value.partial == b"no newline"
        assert info.value.expected is None
        assert "a separator" in str(info.value)


async def test_read_exactly_incomplete() -> None:
    async def handler(conn: Connection) -> None:
        await conn.send(b"abc")

    async with serving(handler) as server, await connect("127.0.0.1", server.port) as conn:
        with pytest.raises(IncompleteReadError) as info:
            await conn.read_exactly(10)
        assert info.value.partial == b"abc"
        assert "10 bytes" in str(info.value)


async def test_bad_read_arguments() -> None:
    async with serving(echo_lines) as server, await connect("127.0.0.1", server.port) as conn:
        with pytest.raises(InvalidLimit, match="n"):
            await conn.read(0)
        with pytest.raises(InvalidLimit, match="n"):
            await conn.read_exactly(-1)
        with pytest.raises(InvalidLimit, match="separator"):
            await conn.read_until(b"")


async def test_read_until_respects_the_line_limit() -> None:
    async def handler(conn: Connection) -> None:
        await conn.send(b"x" * 100 + b"\n" + b"y" * 10 + b"\n")

    async with serving(handler) as server, await connect("127.0.0.1", server.port) as conn:
        await asyncio.sleep(0.05)
        with pytest.raises(LimitExceeded) as info:
            await conn.read_until(b"\n", max_size=50)
        assert info.value.limit == "read_buffer"
        with pytest.raises(LimitExceeded):  # separator present but past the limit
            await conn.read_until(b"\n", max_size=100)
        assert len(await conn.read_until(b"\n", max_size=101)) == 101


async def test_line_longer_than_the_read_buffer_closes_the_connection_with_a_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limits = Limits(read_buffer=1024)
    async with serving(echo_lines, limits) as server:
        conn = await connect("127.0.0.1", server.port)
        await conn.send(b"z" * 5000)
        assert await conn.read() == b""  # aborted (a reset may show up as EOF or an error)
        await conn.aclose()
    assert "closed: limit read_buffer=1024 exceeded" in caplog.text


async def test_read_buffer_cap_pauses_reading_and_bounds_memory() -> None:
    limits = Limits(read_buffer=16 * 1024)
    protocol_seen: list[Connection] = []
    release = asyncio.Event()

    async def handler(conn: Connection) -> None:
        protocol_seen.append(conn)
        await release.wait()
        total = 0
        while total < 1024 * 1024:
            total += len(await conn.read_exactly(1_000_000 if total == 0 else 4096))
        await conn.send(str(total).encode())

    async with serving(handler, limits) as server:
        sock = socket.socket()
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, ("127.0.0.1", server.port))
        sender = asyncio.ensure_future(loop.sock_sendall(sock, b"d" * (1024 * 1024 + 4096)))
        await asyncio.sleep(0.2)
        proto = protocol_seen[0].protocol
        assert proto._reading_paused
        assert len(proto._buffer) <= limits.read_buffer + 256 * 1024  # cap + one read chunk
        release.set()
        await sender
        reply = await asyncio.wait_for(loop.sock_recv(sock, 100), 5)
        assert int(reply) >= 1024 * 1024
        sock.close()


async def test_read_timeout_and_one_reader_at_a_time() -> None:
    async with serving(echo_lines) as server:
        conn = await connect("127.0.0.1", server.port, read_timeout=0.05)
        with pytest.raises(ReadTimeout):
            await conn.read()
        conn.read_timeout = None
        first = asyncio.ensure_future(conn.read())
        await asyncio.sleep(0.01)
        with pytest.raises(NetError, match="another task"):
            await conn.read()
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        await conn.send(b"after\n")
        assert await conn.read_until(b"\n") == b"after\n"
        await conn.aclose()


async def test_the_core_deadline_bounds_reads_and_connects() -> None:
    async with serving(echo_lines) as server:
        conn = await connect("127.0.0.1", server.port)
        with pytest.raises(ReadTimeout), deadline(0.05):
            await conn.read()
        with deadline(0.01):
            await asyncio.sleep(0.02)
            with pytest.raises(DeadlineExceeded):
                await conn.read()
            with pytest.raises(DeadlineExceeded):
                await connect("127.0.0.1", server.port)
        await conn.aclose()


async def test_write_timeout_when_the_peer_does_not_read() -> None:
    async def handler(conn: Connection) -> None:
        await conn.wait_shutdown()

    limits = Limits(write_high_water=1024)
    async with serving(handler) as server:
        conn = await connect("127.0.0.1", server.port, write_timeout=0.1, limits=limits)
        await conn.drain()  # nothing buffered: returns at once

        async def flood() -> None:
            for _ in range(1000):
                await conn.send(b"w" * 65536)

        with pytest.raises(WriteTimeout):
            await flood()
        assert conn.write_buffer_size > 0
        conn.abort()
        await asyncio.sleep(0.01)
        assert conn.closed
        with pytest.raises(ConnectionClosedError):
            conn.write(b"late")
        with pytest.raises(ConnectionClosedError):
            await conn.drain()
        await conn.aclose()


async def test_aclose_gives_up_flushing_after_the_write_timeout() -> None:
    async def handler(conn: Connection) -> None:
        await conn.wait_shutdown()

    limits = Limits(write_high_water=1024)
    async with serving(handler) as server:
        conn = await connect("127.0.0.1", server.port, write_timeout=0.1, limits=limits)
        for _ in range(100):
            conn.write(b"w" * 65536)
        await conn.aclose()
        assert conn.closed


async def test_peer_reset_is_reported_to_the_reader() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.setblocking(False)
    loop = asyncio.get_running_loop()
    accepting = asyncio.ensure_future(loop.sock_accept(listener))
    conn = await connect("127.0.0.1", listener.getsockname()[1])
    peer, _ = await accepting
    reset_socket(peer)
    peer.close()
    with pytest.raises(ConnectionClosedError):
        await conn.read()
    assert isinstance(ConnectionClosedError("x"), NetError)
    await conn.aclose()
    listener.close()


async def test_connect_errors_are_translated(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ConnectError) as info:
        await connect("127.0.0.1", port)
    assert isinstance(info.value.__cause__, OSError)
    with pytest.raises(ConnectError):
        await connect(uds=str(tmp_path / "missing.sock"))
    with pytest.raises(ConnectTimeout):
        await connect("127.0.0.1", port, timeout=0)
    with pytest.raises(InvalidLimit):
        await connect("127.0.0.1")
    with pytest.raises(InvalidLimit):
        await connect("127.0.0.1", 80, uds="/tmp/x")


async def test_unix_stream_client(tmp_path: Path) -> None:
    path = str(tmp_path / "lines.sock")
    server = await start_server(echo_lines, uds=path, observers=())
    async with await connect(uds=path, ssl=False) as conn:
        await conn.send(b"over unix\n")
        assert await conn.read_until(b"\n") == b"over unix\n"
    await server.shutdown()


async def test_handler_failures_are_logged_and_the_server_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def handler(conn: Connection) -> None:
        line = await conn.read_until(b"\n")
        if line == b"crash\n":
            raise RuntimeError("handler bug")
        await conn.send(b"ok\n")

    async with serving(handler) as server:
        with caplog.at_level(logging.ERROR, "flowcoro.net"):
            async with await connect("127.0.0.1", server.port) as conn:
                await conn.send(b"crash\n")
                assert await conn.read() == b""
        assert "connection handler for" in caplog.text
        async with await connect("127.0.0.1", server.port) as conn:
            await conn.send(b"fine\n")
            assert await conn.read_until(b"\n") == b"ok\n"


async def test_a_finished_handler_does_not_linger_on_a_peer_that_never_reads() -> None:
    async def handler(conn: Connection) -> None:
        conn.write_timeout = 0.1
        for _ in range(64):
            conn.write(b"q" * 65536)  # far more than the socket buffers take

    async with serving(handler, Limits(write_high_water=1024)) as server:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
        for _ in range(100):
            await asyncio.sleep(0.02)
            if server.statistics().active == 0 and server.statistics().accepted == 1:
                break
        assert server.statistics().active == 0
        sock.close()


async def test_a_peer_leaving_between_messages_is_quiet_and_mid_message_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def upper(conn: Connection) -> None:
        while True:
            await conn.send((await conn.read_until(b"\n")).upper())

    async with serving(upper) as server:
        with caplog.at_level(logging.WARNING, "flowcoro.net"):
            async with await connect("127.0.0.1", server.port) as conn:
                await conn.send(b"one\n")
                assert await conn.read_until(b"\n") == b"ONE\n"
            await asyncio.sleep(0.05)
            assert "closed" not in caplog.text
            async with await connect("127.0.0.1", server.port) as conn:
                await conn.send(b"half a line")
            await asyncio.sleep(0.05)
            assert "closed: connection closed after 11 bytes" in caplog.text
