"""The core part of the demo: an order pipeline built from flowcoro-core's pieces.

orders --> Channel (bounded) --> 4 workers in a scope --> pub/sub "totals" --> an aggregator

Each worker borrows a "connection" from a Pool, prices the order under a deadline, and offloads
a CPU-bound checksum to a thread. Logs are structured and never block the loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import random
from dataclasses import dataclass

from flowcoro.core import (
    App,
    Channel,
    DeadlineExceeded,
    Pool,
    deadline,
    get_logger,
    scope,
    to_thread,
)

log = get_logger("demo.pipeline")


@dataclass(frozen=True, slots=True)
class Order:
    id: int
    items: int


class FakeConnection:
    """Stands in for a database connection: the pool decides who gets it and for how long."""

    _ids = itertools.count(1)

    def __init__(self) -> None:
        self.id = next(self._ids)

    async def price(self, order: Order) -> float:
        await asyncio.sleep(random.uniform(0.0005, 0.003))
        return round(order.items * 9.99, 2)

    async def aclose(self) -> None:
        return None


async def connect() -> FakeConnection:
    await asyncio.sleep(0.001)  # a real driver would open a socket here
    return FakeConnection()


def checksum(order: Order) -> str:
    return hashlib.sha256(f"{order.id}:{order.items}".encode() * 200).hexdigest()[:12]


async def run_pipeline(app: App, orders: int = 200, workers: int = 4) -> dict[str, float]:
    """Push ``orders`` through the pipeline; return what the aggregator saw."""
    channel: Channel[Order] = Channel(32, name="orders")
    pool: Pool[FakeConnection] = Pool(connect, name="demo-db", min_size=1, max_size=3)
    broker = app.pubsub()
    totals = {"orders": 0.0, "revenue": 0.0, "late": 0.0}
    subscription = await broker.subscribe("totals")

    async def produce() -> None:
        for i in range(orders):
            await channel.send(Order(i, random.randint(1, 5)))  # waits when workers lag
        channel.close()

    async def work(worker: int) -> None:
        async for order in channel:
            try:
                with deadline(0.05):
                    async with pool.acquire() as conn:
                        price = await conn.price(order)
            except DeadlineExceeded:
                totals["late"] += 1
                continue
            digest = await to_thread(checksum, order)
            await broker.publish("totals", f"{order.id}:{price}:{digest}".encode())
        log.debug("worker.done", worker=worker)

    async def aggregate() -> None:
        async for message in subscription:
            _, price, _ = message.data.decode().split(":")
            totals["orders"] += 1
            totals["revenue"] += float(price)
            if totals["orders"] + totals["late"] >= orders:
                return

    async with pool:
        async with scope() as s:
            s.spawn(aggregate())
            s.spawn(produce())
            for worker in range(workers):
                s.spawn(work(worker))
        stats = pool.statistics()
    await subscription.aclose()
    log.info(
        "pipeline.done",
        orders=int(totals["orders"]),
        revenue=round(totals["revenue"], 2),
        late=int(totals["late"]),
        channel_sent=channel.statistics().sent,
        pool_created=stats.created,
        pool_reuse_ratio=round(stats.reuse_ratio, 3),
    )
    return totals
