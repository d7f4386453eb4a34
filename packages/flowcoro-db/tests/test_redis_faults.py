"""Failure paths against small fake servers on real sockets: malformed and unexpected replies,
a server that stops answering, connection loss with commands in flight, unix sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from flowcoro.core.deadline import deadline
from flowcoro.core.errors import ClosedResourceError
from flowcoro.db.errors import DBConnectionError, DBTimeoutError
from flowcoro.db.redis import Redis, RedisCommandError, RedisProtocolError

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def fake_server(handler: Handler, *, path: str | None = None) -> AsyncIterator[str]:
    writers: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    if path is None:
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        url = f"redis://127.0.0.1:{server.sockets[0].getsockname()[1]}/0"
    else:
        server = await asyncio.start_unix_server(serve, path)
        url = f"unix://{path}"
    try:
        yield url
    finally:
        server.close()
        for w in writers:
            w.close()
        await server.wait_closed()
        await asyncio.sleep(0.01)


async def read_command(reader: asyncio.StreamReader) -> list[bytes]:
    header = await reader.readuntil(b"\r\n")
    assert header[:1] == b"*"
    args = []
    for _ in range(int(header[1:-2])):
        size = int((await reader.readuntil(b"\r\n"))[1:-2])
        args.append((await reader.readexactly(size + 2))[:-2])
    return args


def replying(*replies: bytes, then_close: bool = False) -> Handler:
    """Answer each command with the next canned reply; afterwards keep silent (or close)."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for reply in replies:
            await read_command(reader)
            writer.write(reply)
        if then_close:
            return
        while await read_command(reader):
            pass

    return handler


async def test_malformed_reply_discards_the_connection_and_fails_pending() -> None:
    async with fake_server(replying(b"!garbage\r\n")) as url, Redis.from_url(url) as r:
        with pytest.raises(RedisProtocolError, match="invalid reply"):
            await r.get("k")
        assert r._conn is not None
        assert r._conn.closed


async def test_unexpected_reply_without_a_waiting_command() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_command(reader)
        writer.write(b"+PONG\r\n+EXTRA\r\n")
        await reader.read()

    async with fake_server(handler) as url, Redis.from_url(url) as r:
        assert await r.ping() == b"PONG"
        for _ in range(50):
            if r._conn is not None and r._conn.closed:
                break
            await asyncio.sleep(0.01)
        assert r._conn is not None
        assert isinstance(r._conn.error, RedisProtocolError)


async def test_connection_lost_with_commands_in_flight_then_reconnect() -> None:
    calls = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            await read_command(reader)  # read one, answer nothing, hang up
            return
        while True:
            await read_command(reader)
            writer.write(b"$2\r\nok\r\n")

    async with fake_server(handler) as url, Redis.from_url(url) as r:
        got = await asyncio.gather(*(r.get(f"k{i}") for i in range(20)), return_exceptions=True)
        assert all(isinstance(g, DBConnectionError) for g in got)
        assert "lost" in str(got[0])
        assert await r.get("k") == b"ok"
        assert r.statistics().reconnects == 1


async def test_command_timeout_discards_a_stuck_connection() -> None:
    async with fake_server(replying()) as url, Redis.from_url(url, command_timeout=0.2) as r:
        pending = asyncio.gather(r.get("a"), r.get("b"), return_exceptions=True)
        got = await pending
        assert all(isinstance(g, DBTimeoutError) for g in got)
        assert "connection discarded" in str(got[0])
        assert r._conn is not None
        assert r._conn.closed
        assert r.statistics().timeouts == 1
        # a shorter deadline fails only its own command; the connection stays
        with deadline(0.05), pytest.raises(DBTimeoutError):
            await r.get("c")
        assert r._conn is not None
        assert not r._conn.closed
        p = r.pipeline()
        p.get("x")
        with deadline(0.05), pytest.raises(DBTimeoutError, match="pipeline of 1"):
            await p.execute()


async def test_handshake_timeout_and_setup_errors() -> None:
    async with fake_server(replying()) as url:
        r = Redis.from_url(url.replace("redis://", "redis://:pw@"), connect_timeout=0.2)
        with pytest.raises(DBTimeoutError, match="timed out"):
            await r.get("k")
        await r.aclose()
    async with fake_server(replying(b"+OK\r\n", b"-ERR DB index is out of range\r\n")) as url:
        r = Redis.from_url(url.replace("/0", "/99").replace("redis://", "redis://:pw@"))
        with pytest.raises(DBConnectionError, match="setup failed"):
            await r.get("k")
        await r.aclose()
    async with fake_server(replying(b"-NOAUTH Authentication required.\r\n")) as url:
        r = Redis.from_url(url + "?client_name=x")
        with pytest.raises(DBConnectionError, match="authentication"):
            await r.get("k")
        await r.aclose()


async def test_slow_connect_bounded_by_caller_deadline() -> None:
    async with fake_server(replying()) as url:
        r = Redis.from_url(url.replace("redis://", "redis://:pw@"), connect_timeout=5)
        with deadline(0.1), pytest.raises(DBTimeoutError, match="no connection"):
            await r.get("k")
        await r.aclose()


async def test_unix_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "redis.sock")
    server = fake_server(replying(b"+PONG\r\n", then_close=True), path=path)
    async with server as url, Redis.from_url(url) as r:
        assert await r.ping() == b"PONG"


async def test_close_while_connecting() -> None:
    async with fake_server(replying()) as url:
        r = Redis.from_url(url.replace("redis://", "redis://:pw@"))
        task = asyncio.create_task(r.get("k"))
        await asyncio.sleep(0.05)
        await r.aclose()
        with pytest.raises(ClosedResourceError):
            await task


def slow_replies(delay: float) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_command(reader)
            await asyncio.sleep(delay)
            writer.write(b"+OK\r\n")

    return handler


async def test_stall_watchdog_tolerates_a_slow_but_live_server() -> None:
    async with (
        fake_server(slow_replies(0.15)) as url,
        Redis.from_url(url, command_timeout=0.5) as r,
    ):
        got = await asyncio.gather(*(r.execute("PING") for _ in range(6)))
        assert got == [b"OK"] * 6  # 0.9 s in total, but a reply at least every 0.5 s
        assert r.statistics().timeouts == 0


async def test_pipeline_and_transaction_failures() -> None:
    async with fake_server(replying()) as url, Redis.from_url(url) as r:
        pipe = r.pipeline()
        queued = pipe.get("a")
        task = asyncio.create_task(pipe.execute())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert queued.cancelled()
    async with fake_server(replying(then_close=True)) as url, Redis.from_url(url) as r:
        tx = r.pipeline(transaction=True)
        tx.get("a")
        with pytest.raises(DBConnectionError):
            await tx.execute()
    canned = (b"+OK\r\n", b"+QUEUED\r\n", b"-ERR exec refused\r\n")
    async with fake_server(replying(*canned)) as url, Redis.from_url(url) as r:
        tx = r.pipeline(transaction=True)
        tx.get("a")
        with pytest.raises(RedisCommandError, match="exec refused"):
            await tx.execute()


async def test_watch_refused_and_odd_ping() -> None:
    async with fake_server(replying(b"-ERR no watch here\r\n")) as url, Redis.from_url(url) as r:
        with pytest.raises(RedisCommandError, match="no watch"):
            async with r.watch("k"):
                pass
        assert len(r._idle) == 1  # the error reply kept it in step: reusable
    async with fake_server(replying(b"+NOTPONG\r\n")) as url, Redis.from_url(url) as r:
        with pytest.raises(DBConnectionError, match="unexpected PING"):
            await r.health_check()


async def test_max_pending_wait_is_bounded_by_the_deadline() -> None:
    async with fake_server(replying()) as url, Redis.from_url(url, max_pending=1) as r:
        first = asyncio.create_task(r.get("a"))
        await asyncio.sleep(0.05)
        with deadline(0.1), pytest.raises(DBTimeoutError, match="max_pending"):
            await r.get("b")
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first


async def test_max_pending_waiter_moves_to_a_new_connection() -> None:
    calls = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            await read_command(reader)
            await asyncio.sleep(0.1)
            return  # hang up with the command unanswered
        while True:
            await read_command(reader)
            writer.write(b"+OK\r\n")

    async with fake_server(handler) as url, Redis.from_url(url, max_pending=1) as r:
        first = asyncio.create_task(r.get("a"))
        await asyncio.sleep(0.02)
        assert await r.execute("PING") == b"OK"  # waited for room, then reconnected
        with pytest.raises(DBConnectionError):
            await first


async def test_closed_connection_refuses_new_commands() -> None:
    from flowcoro.db.redis.connection import RedisConnection, Stats

    conn = RedisConnection(asyncio.get_running_loop(), Stats())
    conn.discard(DBConnectionError("gone"))
    for call in (
        lambda: conn.submit(b"x"),
        lambda: conn.send_only(b"x"),
        lambda: conn.submit_many(b"x", 1),
    ):
        with pytest.raises(DBConnectionError, match="gone"):
            call()


async def test_malformed_reply_in_the_middle_of_a_pipeline() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_command(reader)
        await read_command(reader)
        writer.write(b"+OK\r\n")
        await asyncio.sleep(0.05)  # the batch is half answered when the garbage arrives
        writer.write(b"!bad\r\n")
        await reader.read()

    async with fake_server(handler) as url, Redis.from_url(url) as r:
        pipe = r.pipeline()
        pipe.get("a")
        second = pipe.get("b")
        with pytest.raises(RedisProtocolError, match="invalid reply"):
            await pipe.execute()
        assert second.cancelled()
