from __future__ import annotations

import asyncio
import random

import pytest

from flowcoro.core.deadline import deadline
from flowcoro.core.errors import ClosedResourceError, DeadlineExceeded, PoolTimeout
from flowcoro.core.pool import Pool


class Res:
    """A resource that records whether it was closed and by whom it is used."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.closed = False
        self.user: object | None = None

    async def aclose(self) -> None:
        self.closed = True


class Factory:
    def __init__(self, delay: float = 0.0, fail: int = 0) -> None:
        self.made: list[Res] = []
        self.delay = delay
        self.fail = fail

    async def __call__(self) -> Res:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail:
            self.fail -= 1
            raise ConnectionError("factory failed")
        r = Res(len(self.made))
        self.made.append(r)
        return r


def consistent(pool: Pool[Res]) -> None:
    s = pool.statistics()
    assert s.size == s.in_use + s.idle, s
    assert s.created - s.closed == s.size, s
    assert s.size <= s.max_size


async def test_acquire_reuse_and_statistics() -> None:
    f = Factory()
    async with Pool(f, name="p", max_size=2) as pool:
        async with pool.acquire() as r1:
            assert not r1.closed
            assert pool.statistics().in_use == 1
        async with pool.acquire() as r2:
            assert r2 is r1
        s = pool.statistics()
        assert (s.created, s.acquisitions, s.reuses, s.idle, s.in_use) == (1, 2, 1, 1, 0)
        assert s.reuse_ratio == 0.5
        assert s.wait_max >= 0.0
        consistent(pool)
        assert "Pool 'p'" in repr(pool)
    assert r1.closed
    assert pool.closed
    s = pool.statistics()
    assert s.closed == 1
    assert s.size == 0


async def test_instances_registry() -> None:
    pool = Pool(Factory(), name="registered")
    assert pool in Pool.instances()
    await pool.aclose()


async def test_timeout_names_pool_and_limits() -> None:
    async with Pool(Factory(), name="db-main", max_size=1, acquire_timeout=0.05) as pool:
        async with pool.acquire():
            with pytest.raises(PoolTimeout) as info:
                async with pool.acquire():
                    pass
            msg = str(info.value)
            assert "db-main" in msg
            assert "max_size=1" in msg
            assert "0.05" in msg
            assert isinstance(info.value, TimeoutError)
            with pytest.raises(PoolTimeout):
                await pool.get(timeout=0.01)
        s = pool.statistics()
        assert s.timeouts == 2
        assert s.waiting == 0
        consistent(pool)


async def test_deadline_bounds_acquire() -> None:
    async with Pool(Factory(), max_size=1, acquire_timeout=30) as pool:
        held = await pool.get()
        with pytest.raises(DeadlineExceeded):
            async with deadline(0.05):
                await pool.get()
        with deadline(0.05), pytest.raises(PoolTimeout):
            await pool.get()
        await pool.put(held)
        consistent(pool)


async def test_waiters_are_fifo_and_handed_over() -> None:
    async with Pool(Factory(), max_size=1) as pool:
        order: list[int] = []
        first = await pool.get()

        async def user(i: int) -> None:
            async with pool.acquire() as r:
                assert r is first
                order.append(i)
                await asyncio.sleep(0)

        tasks = [asyncio.create_task(user(i)) for i in range(5)]
        await asyncio.sleep(0.01)
        assert pool.statistics().waiting == 5
        await pool.put(first)
        await asyncio.gather(*tasks)
        assert order == list(range(5))
        consistent(pool)


async def test_cancelled_waiter_leaks_nothing() -> None:
    async with Pool(Factory(), max_size=1) as pool:
        held = await pool.get()
        task = asyncio.create_task(pool.get())
        await asyncio.sleep(0.01)
        assert pool.statistics().waiting == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert pool.statistics().waiting == 0
        await pool.put(held)
        s = pool.statistics()
        assert s.idle == 1
        assert s.in_use == 0
        consistent(pool)


async def test_cancel_after_handover_gives_resource_back() -> None:
    async with Pool(Factory(), max_size=1) as pool:
        held = await pool.get()
        task = asyncio.create_task(pool.get())
        await asyncio.sleep(0.01)
        # Hand the resource to the waiter and cancel it before it can run.
        pool.put_nowait(held)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        s = pool.statistics()
        assert s.idle == 1
        assert s.in_use == 0
        assert s.size == 1
        async with pool.acquire() as again:
            assert again is held
        consistent(pool)


async def test_cancel_after_slot_handover_frees_slot() -> None:
    async with Pool(Factory(), max_size=1) as pool:
        held = await pool.get()
        task = asyncio.create_task(pool.get())
        await asyncio.sleep(0.01)
        await pool.put(held, discard=True)  # the waiter is handed the free slot
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        s = pool.statistics()
        assert s.size == 0
        assert s.in_use == 0
        consistent(pool)


async def test_holder_cancelled_discards_resource() -> None:
    async with Pool(Factory(), max_size=1) as pool:
        got: list[Res] = []

        async def holder() -> None:
            async with pool.acquire() as r:
                got.append(r)
                await asyncio.sleep(10)

        task = asyncio.create_task(holder())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0)
        assert got[0].closed
        async with pool.acquire() as r:
            assert r is not got[0]
        s = pool.statistics()
        assert s.discarded == 1
        consistent(pool)


async def test_error_policy() -> None:
    async with Pool(Factory(), max_size=1) as pool:
        with pytest.raises(ValueError, match="boom"):
            async with pool.acquire() as r1:
                raise ValueError("boom")
        await asyncio.sleep(0)
        assert r1.closed
    async with Pool(Factory(), max_size=1, discard_on_error=False) as pool:
        with pytest.raises(ValueError, match="boom"):
            async with pool.acquire() as r2:
                raise ValueError("boom")
        assert not r2.closed
        async with pool.acquire() as r3:
            assert r3 is r2


async def test_explicit_discard_and_put() -> None:
    async with Pool(Factory(), max_size=2) as pool:
        async with pool.acquire() as r:
            pool.discard(r)
        await asyncio.sleep(0)
        assert r.closed
        with pytest.raises(ValueError, match="did not lend"):
            pool.discard(Res(99))
        with pytest.raises(ValueError, match="did not lend"):
            await pool.put(Res(99))
        async with pool.acquire() as r2:
            assert pool.is_lent(r2)
            await pool.put(r2)  # given back early: the block must not give it back twice
            assert not pool.is_lent(r2)
        consistent(pool)


async def test_factory_failure_frees_slot() -> None:
    f = Factory(fail=1)
    async with Pool(f, max_size=1) as pool:
        with pytest.raises(ConnectionError):
            await pool.get()
        assert pool.statistics().size == 0
        r = await pool.get()
        await pool.put(r)
        s = pool.statistics()
        assert s.create_errors == 1
        consistent(pool)


async def test_factory_timeout() -> None:
    async with Pool(Factory(delay=1.0), max_size=1, acquire_timeout=0.05) as pool:
        with pytest.raises(PoolTimeout, match="creating"):
            await pool.get()
        assert pool.statistics().size == 0


async def test_cancel_during_create() -> None:
    async with Pool(Factory(delay=1.0), max_size=1) as pool:
        task = asyncio.create_task(pool.get())
        await asyncio.sleep(0.01)
        assert pool.statistics().size == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert pool.statistics().size == 0


async def test_health_check_after_idle() -> None:
    healthy = {"ok": False}
    checks: list[int] = []

    async def check(r: Res) -> bool:
        checks.append(r.n)
        return healthy["ok"]

    f = Factory()
    async with Pool(f, max_size=2, health_check=check, health_check_after=0.0) as pool:
        r0 = await pool.get()
        await pool.put(r0)
        # r0 fails its check: it is closed and a fresh one is made.
        async with pool.acquire() as r:
            await asyncio.sleep(0)
            assert r is not r0
            assert r0.closed
        healthy["ok"] = True
        async with pool.acquire() as r2:
            assert r2 is r
        assert checks == [0, 1]
        consistent(pool)


async def test_health_check_raising_and_skipped_when_recent() -> None:
    calls = 0

    async def check(r: Res) -> None:
        nonlocal calls
        calls += 1
        raise OSError("dead")

    async with Pool(Factory(), health_check=check, health_check_after=5.0) as pool:
        r = await pool.get()
        await pool.put(r)
        async with pool.acquire() as r2:
            assert r2 is r  # released just now: no check
        assert calls == 0
    async with Pool(Factory(), health_check=check, health_check_after=0.0) as pool:
        r = await pool.get()
        await pool.put(r)
        async with pool.acquire() as r2:
            assert r2 is not r
        assert calls == 1


async def test_cancel_during_health_check_discards() -> None:
    gate = asyncio.Event()

    async def check(r: Res) -> bool:
        await gate.wait()
        return True

    async with Pool(Factory(), health_check=check, health_check_after=0.0) as pool:
        r = await pool.get()
        await pool.put(r)
        task = asyncio.create_task(pool.get())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0)
        assert r.closed
        assert pool.statistics().size == 0


async def test_max_idle_reaped_but_min_size_kept() -> None:
    f = Factory()
    async with Pool(f, min_size=1, max_size=3, max_idle=0.05) as pool:
        assert pool.statistics().idle == 1
        rs = [await pool.get() for _ in range(3)]
        for r in rs:
            await pool.put(r)
        assert pool.statistics().idle == 3
        await asyncio.sleep(0.25)
        s = pool.statistics()
        assert s.idle == 1
        assert s.size == 1
        consistent(pool)


async def test_max_idle_checked_on_acquire() -> None:
    async with Pool(Factory(), max_size=1, max_idle=0.02) as pool:
        r = await pool.get()
        await pool.put(r)
        await asyncio.sleep(0.03)
        async with pool.acquire() as r2:
            assert r2 is not r


async def test_max_lifetime() -> None:
    async with Pool(Factory(), max_size=1, max_lifetime=0.05) as pool:
        r = await pool.get()
        await asyncio.sleep(0.06)
        await pool.put(r)  # too old: closed on release
        await asyncio.sleep(0)
        assert r.closed
        r2 = await pool.get()
        await pool.put(r2)
        await asyncio.sleep(0.2)  # reaped by the maintenance task
        assert r2.closed
        consistent(pool)


async def test_min_size_refilled_after_discard_and_factory_backoff() -> None:
    f = Factory()
    async with Pool(f, min_size=2, max_size=4) as pool:
        assert pool.statistics().idle == 2
        r = await pool.get()
        f.fail = 2
        await pool.put(r, discard=True)
        for _ in range(100):
            await asyncio.sleep(0.02)
            if pool.statistics().idle == 2:
                break
        s = pool.statistics()
        assert s.idle == 2
        assert s.create_errors == 2
        consistent(pool)


async def test_min_size_background_without_open() -> None:
    pool = Pool(Factory(), min_size=2, max_size=2)
    r = await pool.get()
    await pool.put(r)
    await asyncio.sleep(0.05)
    assert pool.statistics().idle == 2
    await pool.aclose()
    await pool.aclose()  # idempotent


async def test_open_failure_frees_slot() -> None:
    pool = Pool(Factory(fail=1), min_size=1)
    with pytest.raises(ConnectionError):
        await pool.open()
    await pool.aclose()
    assert pool.statistics().size == 0


async def test_close_wakes_waiters_and_closes_returned() -> None:
    pool = Pool(Factory(), max_size=1)
    held = await pool.get()
    waiter = asyncio.create_task(pool.get())
    await asyncio.sleep(0.01)
    await pool.aclose()
    with pytest.raises(ClosedResourceError, match="closed"):
        await waiter
    with pytest.raises(ClosedResourceError):
        await pool.get()
    with pytest.raises(ClosedResourceError):
        await pool.open()
    await pool.put(held)
    await asyncio.sleep(0)
    assert held.closed
    assert pool.statistics().size == 0


async def test_close_callbacks_sync_async_and_failing() -> None:
    closed: list[int] = []

    def close_sync(r: Res) -> None:
        closed.append(r.n)
        raise OSError("close failed")

    async with Pool(Factory(), close=close_sync) as pool:
        r = await pool.get()
        await pool.put(r, discard=True)
    assert closed == [0]
    assert pool.statistics().close_errors == 1

    class Plain:
        def __init__(self) -> None:
            self.closed = False

        def close(self) -> None:
            self.closed = True

    async def make_plain() -> Plain:
        return Plain()

    async with Pool(make_plain) as plain_pool:
        p = await plain_pool.get()
        await plain_pool.put(p)
    assert p.closed

    async def make_obj() -> object:
        return object()

    async with Pool(make_obj) as obj_pool:  # nothing to close: fine
        o = await obj_pool.get()
        await obj_pool.put(o, discard=True)


def test_bad_arguments() -> None:
    async def make() -> int:
        return 1

    with pytest.raises(TypeError, match="factory"):
        Pool(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_size"):
        Pool(make, max_size=0)
    with pytest.raises(ValueError, match="min_size"):
        Pool(make, min_size=5, max_size=2)
    with pytest.raises(ValueError, match="acquire_timeout"):
        Pool(make, acquire_timeout=0)
    with pytest.raises(ValueError, match="max_idle"):
        Pool(make, max_idle=-1)
    with pytest.raises(ValueError, match="health_check_after"):
        Pool(make, health_check_after=-1)


async def test_stress_1000_tasks_random_cancellations() -> None:
    f = Factory()
    rng = random.Random(7)
    async with Pool(f, name="stress", max_size=10, acquire_timeout=5) as pool:
        in_use: set[int] = set()
        done = 0

        async def worker(i: int) -> None:
            nonlocal done
            async with pool.acquire() as r:
                # Never two users of one resource at once.
                assert id(r) not in in_use
                assert not r.closed
                in_use.add(id(r))
                try:
                    await asyncio.sleep(rng.random() * 0.002)
                finally:
                    in_use.discard(id(r))
            done += 1

        tasks = [asyncio.create_task(worker(i)) for i in range(1000)]
        cancelled = 0
        for _ in range(300):
            await asyncio.sleep(rng.random() * 0.001)
            t = rng.choice(tasks)
            if t.cancel():
                cancelled += 1
        results = await asyncio.gather(*tasks, return_exceptions=True)
        errors = [r for r in results if r is not None and not isinstance(r, asyncio.CancelledError)]
        assert errors == []
        n_cancelled = sum(isinstance(r, asyncio.CancelledError) for r in results)
        assert n_cancelled + done == 1000
        await asyncio.sleep(0)
        s = pool.statistics()
        assert s.in_use == 0
        assert s.waiting == 0
        assert s.size <= 10
        assert s.size == s.idle
        assert s.acquisitions >= done
        assert s.reuses <= s.acquisitions
        consistent(pool)
        # Every slot is usable again: ten concurrent holders at once.
        held = [await pool.get(timeout=1) for _ in range(10)]
        assert len({id(r) for r in held}) == 10
        for r in held:
            await pool.put(r)
        assert sum(not r.closed for r in f.made) == pool.statistics().size


async def test_waiters_with_different_timeouts_share_one_timer() -> None:
    async with Pool(Factory(), max_size=1) as pool:
        held = await pool.get()
        slow = asyncio.create_task(pool.get(timeout=1.0))
        await asyncio.sleep(0)
        fast = asyncio.create_task(pool.get(timeout=0.05))  # earlier: the timer is re-armed
        with pytest.raises(PoolTimeout):
            await fast
        assert not slow.done()  # the timer was re-armed for the later waiter
        with pytest.raises(PoolTimeout):
            await slow
        await pool.put(held)
        assert pool.statistics().timeouts == 2
        consistent(pool)
