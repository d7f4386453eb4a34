from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from flowcoro.net import (
    ClosedPoolError,
    Connection,
    ConnectionPool,
    IncompleteReadError,
    InvalidLimit,
    start_server,
)


async def echo_lines(conn: Connection) -> None:
    while True:
        try:
            line = await conn.read_until(b"\n")
        except IncompleteReadError:
            return
        if line == b"quit\n":
            return
        await conn.send(line)


async def test_connections_are_reused_per_address() -> None:
    server = await start_server(echo_lines, host="127.0.0.1", port=0, observers=())
    async with ConnectionPool(max_per_address=2) as pool:
        for i in range(5):
            async with pool.acquire("127.0.0.1", server.port) as conn:
                await conn.send(f"{i}\n".encode())
                assert await conn.read_until(b"\n") == f"{i}\n".encode()
        stats = pool.statistics()[("127.0.0.1", server.port)]
        assert stats.created == 1
        assert stats.acquisitions == 5
        assert server.statistics().accepted == 1
        assert "addresses=1" in repr(pool)
    assert pool.closed
    await server.shutdown()


async def test_a_connection_closed_by_the_peer_is_not_lent_again() -> None:
    server = await start_server(echo_lines, host="127.0.0.1", port=0, observers=())
    async with ConnectionPool() as pool:
        async with pool.acquire("127.0.0.1", server.port) as conn:
            await conn.send(b"quit\n")  # the server ends this connection
        await asyncio.sleep(0.05)
        async with pool.acquire("127.0.0.1", server.port) as second:
            assert second is not conn
            await second.send(b"again\n")
            assert await second.read_until(b"\n") == b"again\n"
        # Unread bytes left behind make a connection unfit for the next user.
        lease = await pool.get("127.0.0.1", server.port)
        await lease.send(b"unread\n")
        await asyncio.sleep(0.05)
        await pool.put(lease)
        async with pool.acquire("127.0.0.1", server.port) as third:
            assert third is not lease
    await server.shutdown()


async def test_an_error_in_the_block_discards_the_connection() -> None:
    server = await start_server(echo_lines, host="127.0.0.1", port=0, observers=())
    async with ConnectionPool() as pool:
        with pytest.raises(RuntimeError):
            async with pool.acquire("127.0.0.1", server.port) as conn:
                raise RuntimeError("mid-protocol")
        await asyncio.sleep(0.01)
        assert conn.closed
        lease = await pool.get("127.0.0.1", server.port)
        await pool.put(lease, discard=True)
        with pytest.raises(InvalidLimit, match="conn"):
            await pool.put(lease)
    await server.shutdown()


async def test_unix_addresses_and_bad_arguments(tmp_path: Path) -> None:
    path = str(tmp_path / "pool.sock")
    server = await start_server(echo_lines, uds=path, observers=())
    pool = ConnectionPool(max_addresses=1)
    async with pool.acquire(uds=path) as conn:
        await conn.send(b"u\n")
        assert await conn.read_until(b"\n") == b"u\n"
    with pytest.raises(InvalidLimit, match="max_addresses"):
        pool.acquire("127.0.0.1", 1)
    with pytest.raises(InvalidLimit, match="uds"):
        pool.acquire("127.0.0.1", 1, uds=path)
    with pytest.raises(InvalidLimit, match="port"):
        pool.acquire("127.0.0.1")
    await pool.aclose()
    with pytest.raises(ClosedPoolError):
        pool.acquire(uds=path)
    for kwargs in (
        {"max_per_address": 0},
        {"max_addresses": 0},
        {"acquire_timeout": 0},
        {"max_idle": -1},
    ):
        with pytest.raises(InvalidLimit):
            ConnectionPool(**kwargs)  # type: ignore[arg-type]
    await server.shutdown()
