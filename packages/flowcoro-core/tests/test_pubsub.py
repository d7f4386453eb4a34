from __future__ import annotations

import asyncio

import pytest

from flowcoro.core.abc import Message
from flowcoro.core.errors import ClosedResourceError
from flowcoro.core.pubsub import MemoryBroker


async def test_publish_reaches_channel_and_pattern_subscribers() -> None:
    broker = MemoryBroker()
    room = await broker.subscribe("room:1")
    rooms = await broker.subscribe(patterns=("room:*",))
    other = await broker.subscribe("room:2")
    assert await broker.publish("room:1", b"hi") == 2
    assert await room.get() == Message("room:1", b"hi")
    assert await rooms.get() == Message("room:1", b"hi", "room:*")
    assert await broker.publish("lobby", b"x") == 0
    await broker.aclose()
    assert [m async for m in other] == []


async def test_receiver_waits_for_the_next_message() -> None:
    broker = MemoryBroker()
    async with await broker.subscribe("c") as sub:
        waiter = asyncio.ensure_future(sub.get())
        await asyncio.sleep(0)
        assert not waiter.done()
        await broker.publish("c", b"1")
        assert (await waiter).data == b"1"
    with pytest.raises(ClosedResourceError):
        await sub.get()
    await broker.aclose()


async def test_slow_subscriber_drops_oldest_and_counts() -> None:
    broker = MemoryBroker(backlog=3)
    sub = await broker.subscribe("c")
    for i in range(5):
        await broker.publish("c", str(i).encode())
    assert sub.dropped == 2
    await sub.aclose()
    assert [m.data async for m in sub] == [b"2", b"3", b"4"]
    await broker.aclose()


async def test_closing_wakes_a_waiting_reader_and_unsubscribes() -> None:
    broker = MemoryBroker()
    sub = await broker.subscribe("c", patterns=("c*",))
    reader = asyncio.ensure_future(sub.get())
    await asyncio.sleep(0)
    await sub.aclose()
    await sub.aclose()
    with pytest.raises(ClosedResourceError):
        await reader
    assert await broker.publish("c", b"x") == 0


async def test_closed_broker_and_bad_arguments() -> None:
    with pytest.raises(ValueError, match="backlog"):
        MemoryBroker(backlog=0)
    broker = MemoryBroker()
    with pytest.raises(ValueError, match="at least one channel"):
        await broker.subscribe()
    await broker.aclose()
    with pytest.raises(ClosedResourceError):
        await broker.publish("c", b"x")
    with pytest.raises(ClosedResourceError):
        await broker.subscribe("c")
