from __future__ import annotations

import asyncio

from prometheus_client.parser import text_string_to_metric_families

from flowcoro.core import Pool
from flowcoro.observe import PoolCollector, render


class Resource:
    async def close(self) -> None:
        pass


def scrape(collector: PoolCollector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, _ = render(collector.collect)
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(body.decode())
        for s in f.samples
    }


async def test_pool_statistics_of_every_live_pool() -> None:
    async def factory() -> Resource:
        return Resource()

    async with Pool(factory, name="orders-db", max_size=2, acquire_timeout=0.05) as pool:
        held = await pool.get()
        async with pool.acquire():
            waiter = asyncio.ensure_future(pool.get())
            await asyncio.sleep(0.01)
            got = scrape(PoolCollector())
            waiter.cancel()
            await asyncio.gather(waiter, return_exceptions=True)
        await pool.put(held)
        async with pool.acquire():
            pass
        after = scrape(PoolCollector())
    name = (("pool_name", "orders-db"),)
    assert got[("db_client_connection_count", (*name, ("state", "used")))] == 2
    assert got[("db_client_connection_count", (*name, ("state", "idle")))] == 0
    assert got[("db_client_connection_max", name)] == 2
    assert got[("db_client_connection_pending_requests", name)] == 1
    assert got[("flowcoro_pool_waiting", name)] == 1
    assert after[("flowcoro_pool_created_total", name)] == 2
    assert after[("flowcoro_pool_acquisitions_total", name)] == 3
    assert after[("flowcoro_pool_reuse_ratio", name)] > 0
    assert ("flowcoro_pool_wait_p99", name) in after


class Odd:
    name = "odd"

    def __init__(self, stats: object) -> None:
        self._stats = stats

    def statistics(self) -> object:
        if isinstance(self._stats, Exception):
            raise self._stats
        return self._stats


class Plain:
    in_use = 1
    idle = 2
    reuse_ratio = 0.9
    label = "text"  # not a number: skipped
    missing = float("nan")  # not a number either


def test_other_statistics_shapes_and_broken_pools() -> None:
    pools = [
        Odd({"in_use": 3, "healthy": True, "reuse_ratio": 0.5}),
        Odd(Plain()),
        Odd(RuntimeError("boom")),
    ]
    got = scrape(PoolCollector(lambda: pools))
    odd = (("pool_name", "odd"),)
    assert got[("db_client_connection_count", (*odd, ("state", "used")))] == 4
    assert got[("flowcoro_pool_healthy", odd)] == 1
    assert ("flowcoro_pool_label", odd) not in got
    assert got[("flowcoro_pool_reuse_ratio", odd)] == 0.9  # same-named pools: the largest
