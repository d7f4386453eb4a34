from __future__ import annotations

import asyncio
import time

import pytest

from flowcoro.observe import LoopLagMonitor, MetricsRegistry


async def test_a_blocked_loop_shows_as_lag() -> None:
    registry = MetricsRegistry()
    monitor = LoopLagMonitor(registry, interval=0.01)
    monitor.start()
    monitor.start()  # already running: one task
    await asyncio.sleep(0.02)
    time.sleep(0.06)  # block the loop on purpose
    await asyncio.sleep(0.03)
    await monitor.stop()
    await monitor.stop()
    child = monitor.histogram.labels()
    assert sum(child.counts) >= 2
    assert child.sum >= 0.04
    assert max(monitor.last.labels().get(), child.sum) >= 0.04


def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="loop_lag_interval"):
        LoopLagMonitor(MetricsRegistry(), interval=0)
