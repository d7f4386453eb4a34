from __future__ import annotations

import asyncio

import pytest

from flowcoro.core.broadcast import Broadcast
from flowcoro.core.channel import EndOfChannel
from flowcoro.core.errors import BrokenResourceError, ClosedResourceError, WouldBlock


async def test_fan_out_to_every_subscriber() -> None:
    async with Broadcast[int](capacity=8) as hub:
        a = hub.subscribe()
        b = hub.subscribe()
        assert hub.subscribers == 2
        assert hub.publish_nowait(1) == 2
        assert await hub.publish(2) == 2
        assert [await a.recv(), await a.recv()] == [1, 2]
        assert [b.recv_nowait(), b.recv_nowait()] == [1, 2]
        with pytest.raises(WouldBlock):
            a.recv_nowait()
        task = asyncio.create_task(a.recv())
        await asyncio.sleep(0)
        hub.publish_nowait(3)
        assert await task == 3
        assert len(b) == 1
        async with hub.subscribe() as c:
            assert hub.subscribers == 3
            assert len(c) == 0  # only items published after subscribing
        assert hub.subscribers == 2
    s = hub.statistics()
    assert s.published == 3
    assert s.closed
    assert b.recv_nowait() == 3  # drains what it holds after close...
    with pytest.raises(EndOfChannel):
        await b.recv()  # ...then ends
    with pytest.raises(ClosedResourceError):
        hub.publish_nowait(4)
    with pytest.raises(ClosedResourceError):
        await hub.publish(4)
    with pytest.raises(ClosedResourceError):
        hub.subscribe()


async def test_drop_oldest_policy() -> None:
    hub: Broadcast[int] = Broadcast(capacity=2)
    slow = hub.subscribe()
    fast = hub.subscribe(capacity=10)
    for i in range(5):
        hub.publish_nowait(i)
    assert [slow.recv_nowait(), slow.recv_nowait()] == [3, 4]
    assert slow.dropped == 3
    assert len(fast) == 5
    assert hub.statistics().dropped == 3


async def test_disconnect_policy() -> None:
    hub: Broadcast[int] = Broadcast(capacity=2, policy="disconnect")
    slow = hub.subscribe()
    ok = hub.subscribe(policy="drop_oldest")
    hub.publish_nowait(1)
    hub.publish_nowait(2)
    assert hub.publish_nowait(3) == 1  # slow is cut off
    assert slow.disconnected
    assert hub.subscribers == 1
    assert [x async for x in _take(slow, 2)] == [1, 2]
    with pytest.raises(BrokenResourceError, match="too slow"):
        await slow.recv()
    assert len(ok) == 2
    assert hub.statistics().disconnected == 1


async def _take(sub, n):  # type: ignore[no-untyped-def]
    for _ in range(n):
        yield await sub.recv()


async def test_wait_policy_backpressure_and_timeout() -> None:
    hub: Broadcast[int] = Broadcast(capacity=1, policy="wait", wait_timeout=0.05)
    sub = hub.subscribe()
    other = hub.subscribe(policy="drop_oldest")
    await hub.publish(1)
    with pytest.raises(WouldBlock, match="wait"):
        hub.publish_nowait(2)
    assert len(other) == 1  # nothing delivered by the refused publish
    publisher = asyncio.create_task(hub.publish(2))
    await asyncio.sleep(0.01)
    assert not publisher.done()
    assert sub.recv_nowait() == 1  # room: the publisher proceeds
    assert await publisher == 2
    # A stuck subscriber: publish gives up after wait_timeout and disconnects it.
    assert await hub.publish(3) == 1
    assert sub.disconnected


async def test_wait_publisher_cancelled_and_close_while_waiting() -> None:
    hub: Broadcast[int] = Broadcast(capacity=1, policy="wait", wait_timeout=10)
    sub = hub.subscribe()
    hub.publish_nowait(1)
    task = asyncio.create_task(hub.publish(2))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not sub._room
    task = asyncio.create_task(hub.publish(3))
    await asyncio.sleep(0.01)
    hub.close()
    with pytest.raises(ClosedResourceError):
        await task


async def test_subscription_close_and_single_receiver() -> None:
    hub: Broadcast[str] = Broadcast()
    sub = hub.subscribe()
    waiting = asyncio.create_task(sub.recv())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="one task"):
        await sub.recv()
    sub.close()
    sub.close()
    with pytest.raises(EndOfChannel):
        await waiting
    assert hub.subscribers == 0
    assert hub.publish_nowait("x") == 0
    with pytest.raises(EndOfChannel):
        sub.recv_nowait()


async def test_async_for_ends_on_close() -> None:
    hub: Broadcast[int] = Broadcast()
    sub = hub.subscribe()

    async def consume() -> list[int]:
        return [x async for x in sub]

    task = asyncio.create_task(consume())
    for i in range(3):
        await hub.publish(i)
        await asyncio.sleep(0)
    hub.close()
    assert await task == [0, 1, 2]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="capacity"):
        Broadcast(capacity=0)
    with pytest.raises(ValueError, match="policy"):
        Broadcast(policy="block")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="wait_timeout"):
        Broadcast(wait_timeout=0)
    hub: Broadcast[int] = Broadcast()
    with pytest.raises(ValueError, match="capacity"):
        hub.subscribe(capacity=-1)
