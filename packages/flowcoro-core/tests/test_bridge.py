from __future__ import annotations

import asyncio
import threading
import time

import pytest

from flowcoro.core.bridge import ThreadBridge
from flowcoro.core.channel import EndOfChannel
from flowcoro.core.errors import ClosedResourceError, WouldBlock


async def test_threads_feed_the_loop() -> None:
    bridge: ThreadBridge[tuple[int, int]] = ThreadBridge(100_000, name="feed")

    def produce(t: int) -> None:
        for i in range(5_000):
            bridge.send((t, i))
            if i % 1000 == 0:
                time.sleep(0.001)

    threads = [threading.Thread(target=produce, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    got: list[tuple[int, int]] = []
    while len(got) < 20_000:
        got.extend(await bridge.recv_many(512))
    for th in threads:
        th.join()
    assert len(set(got)) == 20_000
    for t in range(4):
        mine = [i for (tt, i) in got if tt == t]
        assert mine == sorted(mine)
    s = bridge.statistics()
    assert (s.sent, s.received, s.dropped, s.size) == (20_000, 20_000, 0, 0)
    assert "feed" in repr(bridge)


async def test_wakes_sleeping_consumer() -> None:
    bridge: ThreadBridge[int] = ThreadBridge(10)
    task = asyncio.create_task(bridge.recv())
    await asyncio.sleep(0.01)
    threading.Thread(target=bridge.send, args=(42,)).start()
    assert await asyncio.wait_for(task, 5) == 42
    assert bridge.statistics().wakeups == 1


async def test_reject_policy_and_nowait() -> None:
    bridge: ThreadBridge[int] = ThreadBridge(2)
    with pytest.raises(WouldBlock, match="empty"):
        bridge.recv_nowait()
    assert bridge.send(1)
    assert bridge.send(2)
    with pytest.raises(WouldBlock, match="full"):
        bridge.send(3)
    assert len(bridge) == 2
    assert bridge.recv_nowait() == 1


async def test_drop_policies() -> None:
    newest: ThreadBridge[int] = ThreadBridge(2, on_full="drop_newest")
    assert [newest.send(i) for i in range(4)] == [True, True, False, False]
    assert await newest.recv_many() == [0, 1]
    assert newest.statistics().dropped == 2
    oldest: ThreadBridge[int] = ThreadBridge(2, on_full="drop_oldest")
    for i in range(4):
        oldest.send(i)
    assert await oldest.recv_many() == [2, 3]
    assert oldest.statistics().dropped == 2


async def test_close_drains_then_ends() -> None:
    bridge: ThreadBridge[int] = ThreadBridge(10)
    bridge.send(1)
    bridge.send(2)
    bridge.close()
    assert bridge.closed
    with pytest.raises(ClosedResourceError):
        bridge.send(3)
    assert [x async for x in bridge] == [1, 2]
    with pytest.raises(EndOfChannel):
        bridge.recv_nowait()
    with pytest.raises(EndOfChannel):
        await bridge.recv()


async def test_close_from_thread_wakes_consumer() -> None:
    bridge: ThreadBridge[int] = ThreadBridge(10)
    task = asyncio.create_task(bridge.recv())
    await asyncio.sleep(0.01)
    threading.Thread(target=bridge.close).start()
    with pytest.raises(EndOfChannel):
        await asyncio.wait_for(task, 5)


async def test_one_receiver_at_a_time_and_cancel() -> None:
    bridge: ThreadBridge[int] = ThreadBridge(10)
    task = asyncio.create_task(bridge.recv())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="one task"):
        await bridge.recv()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    bridge.send(1)
    assert await bridge.recv() == 1
    with pytest.raises(ValueError, match="max_items"):
        await bridge.recv_many(0)


def test_bad_arguments_and_closed_loop() -> None:
    loop = asyncio.new_event_loop()
    with pytest.raises(ValueError, match="capacity"):
        ThreadBridge(0, loop=loop)
    with pytest.raises(ValueError, match="on_full"):
        ThreadBridge(1, on_full="block", loop=loop)  # type: ignore[arg-type]
    bridge: ThreadBridge[int] = ThreadBridge(4, loop=loop)
    bridge._waiter = loop.create_future()  # pretend the consumer sleeps
    loop.close()
    with pytest.raises(ClosedResourceError, match="loop is closed"):
        bridge.send(1)
    bridge.close()  # must not raise either
