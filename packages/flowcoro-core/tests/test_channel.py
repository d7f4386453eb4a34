from __future__ import annotations

import asyncio
import random

import pytest

from flowcoro.core.channel import Channel, EndOfChannel
from flowcoro.core.errors import ClosedResourceError, WouldBlock


def check_room(ch: Channel[int]) -> None:
    """The fast-path counter matches the channel's real state."""
    if ch.closed:
        assert ch._room < 0
    elif any(not w.done() for w in ch._receivers):
        assert ch._room == 0
    elif not ch._receivers:
        assert ch._room == ch._capacity - len(ch._buffer) - ch._reserved


async def test_send_recv_order_and_statistics() -> None:
    ch: Channel[int] = Channel(4, name="c")
    for i in range(4):
        await ch.send(i)
    assert len(ch) == 4
    with pytest.raises(WouldBlock, match="full"):
        ch.send_nowait(9)
    assert [await ch.recv() for _ in range(2)] == [0, 1]
    assert ch.recv_nowait() == 2
    check_room(ch)
    s = ch.statistics()
    assert (s.capacity, s.size, s.sent, s.received, s.closed) == (4, 1, 4, 3, False)
    assert "Channel 'c' 1/4 open" in repr(ch)
    assert ch.capacity == 4


async def test_nowait_empty_and_closed() -> None:
    ch: Channel[int] = Channel(2)
    with pytest.raises(WouldBlock, match="empty"):
        ch.recv_nowait()
    ch.send_nowait(1)
    ch.close()
    ch.close()  # idempotent
    assert ch.closed
    with pytest.raises(ClosedResourceError, match="closed"):
        ch.send_nowait(2)
    with pytest.raises(ClosedResourceError):
        await ch.send(2)
    assert ch.recv_nowait() == 1
    with pytest.raises(EndOfChannel):
        ch.recv_nowait()
    with pytest.raises(EndOfChannel):
        await ch.recv()
    with pytest.raises(EndOfChannel):
        await ch.recv_many()


def test_bad_capacity() -> None:
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ValueError, match="capacity"):
            Channel(bad)  # type: ignore[arg-type]


async def test_async_for_ends_on_closed_drained() -> None:
    async with Channel[int](3) as ch:

        async def produce() -> None:
            for i in range(10):
                await ch.send(i)
            ch.close()

        task = asyncio.create_task(produce())
        got = [x async for x in ch]
        await task
    assert got == list(range(10))


async def test_waiting_receiver_gets_item_directly_and_close_wakes_it() -> None:
    ch: Channel[str] = Channel(1)
    task = asyncio.create_task(ch.recv())
    await asyncio.sleep(0)
    assert ch.statistics().receivers_waiting == 1
    ch.send_nowait("x")
    assert await task == "x"
    task = asyncio.create_task(ch.recv())
    await asyncio.sleep(0)
    ch.close()
    with pytest.raises(EndOfChannel):
        await task


async def test_waiting_senders_fifo_and_close_fails_them() -> None:
    ch: Channel[int] = Channel(1)
    await ch.send(0)
    tasks = [asyncio.create_task(ch.send(i)) for i in range(1, 4)]
    await asyncio.sleep(0)
    assert ch.statistics().senders_waiting == 3
    assert await ch.recv() == 0
    # Room freed is reserved for the oldest waiting sender: a newcomer cannot take it.
    with pytest.raises(WouldBlock):
        ch.send_nowait(99)
    assert await ch.recv() == 1
    assert await ch.recv() == 2
    ch.close()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert results[0] is None
    assert results[1] is None
    assert isinstance(results[2], ClosedResourceError)
    with pytest.raises(EndOfChannel):
        ch.recv_nowait()


async def test_woken_sender_after_close_does_not_deliver() -> None:
    ch: Channel[int] = Channel(1)
    await ch.send(0)
    task = asyncio.create_task(ch.send(1))
    await asyncio.sleep(0)
    assert ch.recv_nowait() == 0  # wakes the sender (room reserved)
    ch.close()
    with pytest.raises(ClosedResourceError):
        await task
    assert len(ch) == 0


async def test_cancel_waiting_sender_item_not_delivered() -> None:
    ch: Channel[int] = Channel(1)
    await ch.send(0)
    task = asyncio.create_task(ch.send(1))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ch.statistics().senders_waiting == 0
    assert ch.recv_nowait() == 0
    with pytest.raises(WouldBlock):
        ch.recv_nowait()
    ch.send_nowait(2)  # the room is free again
    check_room(ch)


async def test_cancel_sender_after_room_reserved_passes_it_on() -> None:
    ch: Channel[int] = Channel(1)
    await ch.send(0)
    first = asyncio.create_task(ch.send(1))
    second = asyncio.create_task(ch.send(2))
    await asyncio.sleep(0)
    assert ch.recv_nowait() == 0  # room reserved for `first`
    first.cancel()  # ... which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await first
    await second
    assert ch.recv_nowait() == 2
    assert ch._reserved == 0
    check_room(ch)


async def test_cancel_waiting_receiver() -> None:
    ch: Channel[int] = Channel(1)
    task = asyncio.create_task(ch.recv())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ch.statistics().receivers_waiting == 0
    ch.send_nowait(5)
    assert ch.recv_nowait() == 5


async def test_cancel_receiver_after_handoff_puts_item_back() -> None:
    ch: Channel[int] = Channel(2)
    task = asyncio.create_task(ch.recv())
    await asyncio.sleep(0)
    ch.send_nowait(1)  # handed straight to the waiting receiver
    ch.send_nowait(2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [ch.recv_nowait(), ch.recv_nowait()] == [1, 2]
    check_room(ch)


async def test_cancel_receiver_after_handoff_hands_to_next_receiver() -> None:
    ch: Channel[int] = Channel(2)
    first = asyncio.create_task(ch.recv())
    await asyncio.sleep(0)
    second = asyncio.create_task(ch.recv())
    await asyncio.sleep(0)
    ch.send_nowait(1)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await second == 1


async def test_recv_many_and_send_many() -> None:
    ch: Channel[int] = Channel(8)
    with pytest.raises(ValueError, match="max_items"):
        await ch.recv_many(0)
    await ch.send_many(range(5))
    assert await ch.recv_many(3) == [0, 1, 2]
    assert await ch.recv_many() == [3, 4]
    task = asyncio.create_task(ch.recv_many(10))
    await asyncio.sleep(0)
    await ch.send_many([7, 8])
    assert await task == [7, 8]
    # recv_many wakes as many waiting senders as it freed room for
    small: Channel[int] = Channel(2)
    await small.send_many([1, 2])
    senders = [asyncio.create_task(small.send(i)) for i in (3, 4)]
    await asyncio.sleep(0)
    assert await small.recv_many() == [1, 2]
    await asyncio.gather(*senders)
    check_room(small)
    assert await small.recv_many() == [3, 4]
    check_room(small)


async def test_anext_fast_path_wakes_senders() -> None:
    ch: Channel[int] = Channel(1)
    await ch.send(1)
    sender = asyncio.create_task(ch.send(2))
    await asyncio.sleep(0)
    it = aiter(ch)
    assert await anext(it) == 1
    await sender
    assert await anext(it) == 2


async def test_stress_10000_random_cancellations_nothing_lost_or_duplicated() -> None:
    rng = random.Random(11)
    ch: Channel[int] = Channel(64)
    delivered: list[int] = []
    sent_ok: set[int] = set()

    async def sender(i: int) -> None:
        if rng.random() < 0.5:
            await asyncio.sleep(0)
        await ch.send(i)
        sent_ok.add(i)

    async def receiver() -> None:
        while True:
            try:
                item = await ch.recv()
            except EndOfChannel:
                return
            delivered.append(item)
            if rng.random() < 0.3:
                await asyncio.sleep(0)

    receivers = [asyncio.create_task(receiver()) for _ in range(8)]
    senders = [asyncio.create_task(sender(i)) for i in range(10_000)]
    # Cancel random senders and random receivers while traffic flows; replace receivers.
    for _ in range(200):
        await asyncio.sleep(0)
        check_room(ch)
        assert len(ch) <= ch.capacity + 8  # put-backs of cancelled receivers only
        rng.choice(senders).cancel()
        victim = rng.randrange(len(receivers))
        if rng.random() < 0.3 and receivers[victim].cancel():
            receivers.append(asyncio.create_task(receiver()))
    await asyncio.gather(*senders, return_exceptions=True)
    check_room(ch)
    ch.close()
    check_room(ch)
    await asyncio.gather(*receivers, return_exceptions=True)
    assert len(delivered) == len(set(delivered)), "an item was delivered twice"
    assert set(delivered) == sent_ok, "an item that was sent was lost (or a cancelled one leaked)"
    assert len(sent_ok) < 10_000  # some sends really were cancelled
    s = ch.statistics()
    assert s.size == 0
    assert s.received == len(delivered)


async def test_stress_small_capacity_mixed_apis() -> None:
    rng = random.Random(5)
    ch: Channel[int] = Channel(3)
    delivered: list[int] = []
    sent_ok: set[int] = set()

    async def sender(i: int) -> None:
        if rng.random() < 0.2:
            try:
                ch.send_nowait(i)
            except WouldBlock:
                await ch.send(i)
        else:
            await ch.send(i)
        sent_ok.add(i)

    async def receiver(kind: int) -> None:
        try:
            if kind == 0:
                async for item in ch:
                    delivered.append(item)
                    await asyncio.sleep(0)
            while True:
                if kind == 1:
                    delivered.extend(await ch.recv_many(2))
                else:
                    delivered.append(await ch.recv())
                if rng.random() < 0.5:
                    await asyncio.sleep(0)
        except EndOfChannel:
            return

    receivers = [asyncio.create_task(receiver(k % 3)) for k in range(6)]
    senders = [asyncio.create_task(sender(i)) for i in range(3_000)]
    for _ in range(300):
        await asyncio.sleep(0)
        check_room(ch)
        rng.choice(senders).cancel()
        victim = rng.randrange(len(receivers))
        if rng.random() < 0.2 and receivers[victim].cancel():
            receivers.append(asyncio.create_task(receiver(rng.randrange(3))))
    await asyncio.gather(*senders, return_exceptions=True)
    check_room(ch)
    ch.close()
    await asyncio.gather(*receivers, return_exceptions=True)
    assert len(delivered) == len(set(delivered))
    assert set(delivered) == sent_ok
    assert ch.statistics().received == len(delivered)
