"""Stream consumer groups against the real Redis: a consumer dies with entries pending and
another takes them over with XAUTOCLAIM."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from flowcoro.db.redis import ConsumerGroup, Redis, RedisCommandError, StreamEntry


async def test_dead_consumer_entries_are_claimed_by_another(redis_url: str) -> None:
    stream = f"fct:{uuid.uuid4().hex[:10]}:stream"
    async with Redis.from_url(redis_url) as r:
        try:
            dead = ConsumerGroup(r, stream, "workers", "alice")
            alive = ConsumerGroup(r, stream, "workers", "bob")
            assert await dead.create() is True
            assert await alive.create() is False  # BUSYGROUP: already there
            ids = [await dead.add({"n": i}) for i in range(5)]
            assert await r.xlen(stream) == 5
            got = await dead.read(count=3)
            assert [e.id for e in got] == ids[:3]
            assert got[0] == StreamEntry(ids[0], {b"n": b"0"})
            assert await dead.ack(got[0].id) == 1
            assert await dead.ack() == 0
            # alice dies with ids[1] and ids[2] pending
            pending = await alive.pending(consumer="alice")
            assert [(p.id, p.consumer, p.deliveries) for p in pending] == [
                (ids[1], "alice", 1),
                (ids[2], "alice", 1),
            ]
            assert await alive.pending(min_idle=60) == []
            await asyncio.sleep(0.06)
            assert await r.xdel(stream, ids[2]) == 1  # deleted while pending
            claimed = await alive.autoclaim(min_idle=0.05)
            assert [e.id for e in claimed.entries] == [ids[1]]
            assert claimed.deleted == [ids[2]]
            assert claimed.next_id == "0-0"
            mine = await alive.read(pending=True)
            assert [e.id for e in mine] == [ids[1]]
            assert await alive.ack(ids[1]) == 1
            rest = await alive.read(count=10, block=0.05)
            assert [e.id for e in rest] == ids[3:]
            assert await alive.ack(*ids[3:]) == 2
            assert await alive.read(block=0.05) == []  # nothing new: the block times out
            assert await alive.read() == []
            assert await alive.pending() == []
            assert await alive.delete_consumer("alice") == 0
            assert await alive.delete_consumer() == 0
            await r.xadd(stream, {"big": "x"}, maxlen=2, approximate=False)
            assert await r.xlen(stream) == 2
            await r.xadd(stream, {"k": "v"}, maxlen=1000)
            await r.xadd(stream, {"k": "v"}, id="999999999999999-1")
            assert await alive.destroy() is True
            with pytest.raises(RedisCommandError, match="NOGROUP"):
                await alive.read()
            with pytest.raises(RedisCommandError):
                await ConsumerGroup(r, stream, "g", "c").create("not-an-id")
        finally:
            await r.delete(stream)


def test_consumer_group_validation() -> None:
    r = Redis()
    with pytest.raises(ValueError, match="'group'"):
        ConsumerGroup(r, "s", "", "c")


async def test_read_count_validation(redis_url: str) -> None:
    async with Redis.from_url(redis_url) as r:
        with pytest.raises(ValueError, match="count"):
            await ConsumerGroup(r, "s", "g", "c").read(count=0)
