from __future__ import annotations

import asyncio
import time

import pytest

from flowcoro.core.errors import DeadlineExceeded
from flowcoro.core.scope import map_bounded, scope, when_all, when_any


async def test_scope_waits_for_children() -> None:
    done: list[int] = []

    async def child(i: int) -> int:
        await asyncio.sleep(0.01 * i)
        done.append(i)
        return i

    async with scope() as s:
        tasks = [s.spawn(child(i), name=f"c{i}") for i in range(3)]
    assert sorted(done) == [0, 1, 2]
    assert [t.result() for t in tasks] == [0, 1, 2]
    assert tasks[1].get_name() == "c1"


async def test_first_error_propagates_unwrapped_and_others_are_cancelled() -> None:
    cancelled: list[str] = []

    async def slow() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append("slow")
            raise

    async def fail() -> None:
        await asyncio.sleep(0.01)
        raise ConnectionError("down")

    async def body() -> None:
        async with scope() as s:
            s.spawn(slow())
            s.spawn(fail())
            await asyncio.sleep(10)

    with pytest.raises(ConnectionError, match="down") as info:
        await body()
    assert cancelled == ["slow"]
    assert info.value.__suppress_context__


async def test_no_error_lost_silently() -> None:
    async def fail(exc: Exception) -> None:
        raise exc

    async def body() -> None:
        async with scope() as s:
            s.spawn(fail(ValueError("one")))
            s.spawn(fail(KeyError("two")))

    with pytest.raises(ValueError, match="one") as info:
        await body()
    notes = getattr(info.value, "__notes__", [])
    assert any("KeyError" in n and "two" in n for n in notes)


async def test_body_error_propagates() -> None:
    async def body() -> None:
        async with scope() as s:
            s.spawn(asyncio.sleep(10))
            raise RuntimeError("body")

    with pytest.raises(RuntimeError, match="body"):
        await body()


async def test_cancel_scope_exits_quietly() -> None:
    async with scope() as s:
        child = s.spawn(asyncio.sleep(10))
        s.cancel()
        s.cancel()  # idempotent
        await asyncio.sleep(10)
    assert s.cancelled
    assert child.cancelled()


async def test_cancel_from_child_after_body_finished() -> None:
    async def stopper(sc: object) -> None:
        await asyncio.sleep(0.01)
        sc.cancel()  # type: ignore[attr-defined]

    async with scope() as s:
        other = s.spawn(asyncio.sleep(10))
        s.spawn(stopper(s))
    assert other.cancelled()


async def test_outer_cancellation_propagates() -> None:
    async def body() -> None:
        async with scope() as s:
            s.spawn(asyncio.sleep(10))
            await asyncio.sleep(10)

    task = asyncio.create_task(body())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_scope_timeout() -> None:
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        async with scope(timeout=0.05) as s:
            s.spawn(asyncio.sleep(10))
    assert time.monotonic() - started < 2


async def test_spawn_outside_block() -> None:
    s = scope()
    coro = asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="outside"):
        s.spawn(coro)
    s.cancel()  # no-op before entering


async def test_when_all() -> None:
    async def value(v: int, delay: float) -> int:
        await asyncio.sleep(delay)
        return v

    assert await when_all(value(1, 0.02), value(2, 0.0), value(3, 0.01)) == [1, 2, 3]
    assert await when_all() == []
    with pytest.raises(DeadlineExceeded):
        await when_all(value(1, 10), timeout=0.02)

    async def boom() -> int:
        raise ValueError("x")

    with pytest.raises(ValueError, match="x"):
        await when_all(value(1, 10), boom())


async def test_when_any() -> None:
    async def value(v: int, delay: float) -> int:
        await asyncio.sleep(delay)
        return v

    async def boom(msg: str) -> int:
        raise ValueError(msg)

    assert await when_any(value(1, 0.05), value(2, 0.0)) == 2
    assert await when_any(boom("a"), value(3, 0.01)) == 3
    with pytest.raises(ValueError, match="a") as info:
        await when_any(boom("a"), boom("b"))
    assert any("b" in n for n in info.value.__notes__)
    with pytest.raises(ValueError, match="at least one"):
        await when_any()
    with pytest.raises(DeadlineExceeded):
        await when_any(value(1, 10), timeout=0.02)


async def test_map_bounded_limits_concurrency_and_keeps_order() -> None:
    running = 0
    peak = 0

    async def work(x: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.001 * (x % 3))
        running -= 1
        return x * x

    out = await map_bounded(work, (i for i in range(50)), limit=4)
    assert out == [i * i for i in range(50)]
    assert peak == 4
    assert await map_bounded(work, [], limit=2) == []
    for bad in (0, True, 1.5):
        with pytest.raises(ValueError, match="limit"):
            await map_bounded(work, [1], limit=bad)  # type: ignore[arg-type]

    async def fail_on_3(x: int) -> int:
        if x == 3:
            raise KeyError(x)
        await asyncio.sleep(0.01)
        return x

    with pytest.raises(KeyError):
        await map_bounded(fail_on_3, range(10), limit=3)
