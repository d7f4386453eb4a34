from __future__ import annotations

import asyncio
import operator
import os
import threading
import time
from collections.abc import Iterator

import pytest

from flowcoro.core import offload
from flowcoro.core.deadline import deadline, remaining
from flowcoro.core.offload import (
    configure_offload,
    offload_statistics,
    shutdown_offload,
    to_process,
    to_thread,
)


@pytest.fixture
def small_pool() -> Iterator[None]:
    shutdown_offload()
    configure_offload(max_threads=2, max_pending=3)
    yield
    shutdown_offload()
    configure_offload()


async def test_to_thread_runs_off_loop_and_copies_context(small_pool: None) -> None:
    loop_thread = threading.get_ident()

    def work(a: int, b: int = 0) -> tuple[int, int, float | None]:
        return threading.get_ident(), a + b, remaining()

    async with deadline(5):
        ident, total, left = await to_thread(work, 1, b=2)
    assert ident != loop_thread
    assert total == 3
    assert left is not None
    assert 0 < left <= 5


async def test_to_thread_is_bounded(small_pool: None) -> None:
    gate = threading.Event()
    running = 0
    peak = 0
    lock = threading.Lock()

    def blocking() -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        gate.wait(5)
        with lock:
            running -= 1

    tasks = [asyncio.create_task(to_thread(blocking)) for _ in range(10)]
    for _ in range(500):  # wait (bounded) until both workers really run, even on a busy box
        await asyncio.sleep(0.01)
        if peak == 2 and offload_statistics().thread_calls_in_pool == 3:
            break
    s = offload_statistics()
    assert s.max_threads == 2
    assert s.thread_calls_in_pool == 3  # max_pending: the other 7 wait on the loop
    assert peak == 2
    gate.set()
    await asyncio.gather(*tasks)
    assert offload_statistics().thread_calls_in_pool == 0


async def test_cancel_releases_slot_only_when_work_ends(small_pool: None) -> None:
    gate = threading.Event()
    started = threading.Event()

    def work() -> None:
        started.set()
        gate.wait(5)

    task = asyncio.create_task(to_thread(work))
    while not started.is_set():
        await asyncio.sleep(0.005)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert offload_statistics().thread_calls_in_pool == 1  # still running in its thread
    gate.set()
    for _ in range(100):
        await asyncio.sleep(0.01)
        if offload_statistics().thread_calls_in_pool == 0:
            break
    assert offload_statistics().thread_calls_in_pool == 0


async def test_errors_propagate(small_pool: None) -> None:
    def fail() -> None:
        raise OSError("disk")

    with pytest.raises(OSError, match="disk"):
        await to_thread(fail)


@pytest.mark.loops("asyncio")
async def test_to_process(small_pool: None) -> None:
    assert await to_process(operator.mul, 6, 7) == 42
    assert await to_process(pow, 2, 10) == 1024


def test_configure_validation_and_after_use() -> None:
    with pytest.raises(ValueError, match="max_threads"):
        configure_offload(max_threads=0)
    with pytest.raises(ValueError, match="max_pending"):
        configure_offload(max_pending=True)
    offload._threads.get_executor()
    try:
        with pytest.raises(RuntimeError, match="after first use"):
            configure_offload(max_threads=3)
    finally:
        shutdown_offload(wait=False)
    configure_offload()


def test_submit_failure_releases_slot() -> None:
    async def main() -> None:
        shutdown_offload()
        ex = offload._threads.get_executor()
        ex.shutdown()  # submit() now raises RuntimeError
        with pytest.raises(RuntimeError):
            await to_thread(time.sleep, 0)
        sem = offload._threads.semaphore(asyncio.get_running_loop())
        assert not sem.locked()

    asyncio.run(main())
    shutdown_offload()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_gets_fresh_pools() -> None:
    async def use() -> int:
        return await to_thread(operator.add, 2, 3)

    assert asyncio.run(use()) == 5  # the parent's pool now has live threads
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child, reported through the exit status
        code = 3
        try:
            code = 0 if asyncio.run(asyncio.wait_for(use(), 5)) == 5 else 4
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    shutdown_offload()
