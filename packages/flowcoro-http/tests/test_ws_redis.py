"""Two server processes, one Redis: a room's messages cross both ways, and a worker restart
loses no subscription. Needs flowcoro-db[redis] (skipped without it) and Redis."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

pytest.importorskip(
    "flowcoro.db.redis", reason="flowcoro-db[redis] is not installed: no Redis broker to test"
)

WORKER = Path(__file__).with_name("_ws_worker.py")


@contextlib.asynccontextmanager
async def worker(redis_url: str) -> AsyncIterator[int]:
    env = {**os.environ, "FLOWCORO_PLUGINS": "core,net,http,db"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(WORKER), redis_url, stdout=asyncio.subprocess.PIPE, env=env
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert line.startswith(b"PORT "), line
        yield int(line.split()[1])
    finally:
        if proc.returncode is None:
            proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)
        assert proc.returncode == 0


async def _recv(client: object) -> object:
    return await asyncio.wait_for(client.recv(), 5)  # type: ignore[attr-defined]


async def test_two_processes_share_a_room_through_redis(redis_url: str) -> None:
    async with worker(redis_url) as port1:
        async with (
            worker(redis_url) as port2,
            connect(f"ws://127.0.0.1:{port1}/chat/r") as a,
            connect(f"ws://127.0.0.1:{port2}/chat/r") as b,
        ):
            assert await _recv(a) == "joined redis"
            assert await _recv(b) == "joined redis"
            await a.send("from one")
            assert await _recv(b) == "from one"
            assert await _recv(a) == "from one"
            await b.send("from two")
            assert await _recv(a) == "from two"
            assert await _recv(b) == "from two"
        # Worker 2 restarts: worker 1's subscription is untouched, the new one subscribes.
        async with (
            worker(redis_url) as port2,
            connect(f"ws://127.0.0.1:{port1}/chat/r") as a,
            connect(f"ws://127.0.0.1:{port2}/chat/r") as b,
        ):
            await _recv(a)
            await _recv(b)
            await b.send("after restart")
            assert await _recv(a) == "after restart"
            await a.send("and back")
            assert await _recv(b) == "after restart"
            assert await _recv(b) == "and back"
