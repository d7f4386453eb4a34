"""Event-loop lag: how late a timer fires, sampled every ``interval`` seconds.

A task sleeps ``interval`` and measures how much later than asked it woke up: the time the loop
was busy with other callbacks. The cost is one timer per interval (0.5 s by default): nothing per
request.
"""

from __future__ import annotations

import asyncio

from flowcoro.observe.instruments import Gauge, Histogram, MetricsRegistry

__all__ = ["LAG_BUCKETS", "LoopLagMonitor"]

LAG_BUCKETS: tuple[float, ...] = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class LoopLagMonitor:
    """Observes ``flowcoro_event_loop_lag_seconds`` (histogram) and keeps the last and the
    largest lag since the previous scrape in gauges."""

    def __init__(self, registry: MetricsRegistry, interval: float = 0.5) -> None:
        if not interval > 0:
            raise ValueError(f"loop_lag_interval must be > 0, got {interval!r}")
        self.interval = interval
        self.histogram: Histogram = registry.histogram(
            "flowcoro_event_loop_lag_seconds",
            "How late the event loop ran a timer (time it was busy with other work)",
            buckets=LAG_BUCKETS,
        )
        self.last: Gauge = registry.gauge(
            "flowcoro_event_loop_lag_last_seconds", "The most recent event-loop lag sample"
        )
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="flowcoro-observe-loop-lag"
            )

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        child = self.histogram.labels()
        last = self.last.labels()
        while True:
            before = loop.time()
            await asyncio.sleep(self.interval)
            lag = max(0.0, loop.time() - before - self.interval)
            child.observe(lag)
            last.set(lag)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])  # waits without re-raising its CancelledError
