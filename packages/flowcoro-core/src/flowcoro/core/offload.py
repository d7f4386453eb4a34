"""Offload blocking and CPU-bound work to bounded thread and process pools.

- ``await to_thread(fn, *args, **kwargs)`` runs ``fn`` on a thread pool of ``max_threads``
  workers (default ``min(32, cpu_count + 4)``). At most ``max_pending`` calls (default
  ``4 * max_threads``) may be in the pool at once, running or queued; further callers wait (in
  FIFO order) on the loop instead of piling work into an unbounded executor queue. The caller's
  context variables (deadline, log context) are copied into the thread.
- ``await to_process(fn, *args, **kwargs)`` runs ``fn`` in a process pool of ``max_processes``
  workers (default ``cpu_count``), started with the ``forkserver`` method (safe with threads
  such as the logger's writer). ``fn`` and its arguments must be picklable (module-level
  functions). Bounded the same way.
- Cancellation: the awaiting task is cancelled at once. A call not yet started is withdrawn; one
  already running cannot be interrupted (Python threads cannot be killed): it runs to the end and
  keeps its slot until then, so the bounds stay true.
- ``configure_offload(...)`` sets the limits (before first use, or after ``shutdown_offload``);
  ``shutdown_offload()`` waits for running work and stops the pools (``run()`` calls it).
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import contextvars
import functools
import multiprocessing
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any, NamedTuple, ParamSpec, TypeVar

__all__ = [
    "to_thread",
    "to_process",
    "configure_offload",
    "shutdown_offload",
    "offload_statistics",
    "OffloadStatistics",
]

P = ParamSpec("P")
T = TypeVar("T")


class OffloadStatistics(NamedTuple):
    max_threads: int
    thread_calls_in_pool: int
    max_processes: int
    process_calls_in_pool: int
    max_pending: int


class _Lane:
    """One executor plus a bound on the calls inside it (per event loop semaphores)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.workers = 0
        self.max_pending = 0
        self.executor: cf.Executor | None = None
        self.in_pool = 0
        self.lock = threading.Lock()
        self.semaphores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore]
        self.semaphores = weakref.WeakKeyDictionary()

    def get_executor(self) -> cf.Executor:
        with self.lock:
            if self.executor is None:
                if self.kind == "thread":
                    self.executor = cf.ThreadPoolExecutor(
                        self.workers, thread_name_prefix="flowcoro-offload"
                    )
                else:
                    context = multiprocessing.get_context("forkserver")
                    self.executor = cf.ProcessPoolExecutor(self.workers, mp_context=context)
            return self.executor

    def semaphore(self, loop: asyncio.AbstractEventLoop) -> asyncio.Semaphore:
        sem = self.semaphores.get(loop)
        if sem is None:
            sem = self.semaphores[loop] = asyncio.Semaphore(self.max_pending)
        return sem

    async def submit(self, call: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        sem = self.semaphore(loop)
        await sem.acquire()
        try:
            future = self.get_executor().submit(call)
        except BaseException:
            sem.release()
            raise
        self.in_pool += 1

        def release(_: cf.Future[Any]) -> None:
            # Runs in the worker (or the canceller): hand the slot back on the loop's thread.
            try:
                loop.call_soon_threadsafe(self._release, sem)
            except RuntimeError:  # pragma: no cover - the loop closed meanwhile
                pass

        future.add_done_callback(release)
        return await asyncio.wrap_future(future, loop=loop)

    def _release(self, sem: asyncio.Semaphore) -> None:
        self.in_pool -= 1
        sem.release()

    def after_fork_in_child(self) -> None:  # pragma: no cover - runs in forked children
        # The parent's worker threads do not exist in a forked child: an executor copied from
        # the parent would accept work and never run it. Start afresh on first use.
        self.executor = None
        self.in_pool = 0
        self.lock = threading.Lock()
        self.semaphores = weakref.WeakKeyDictionary()

    def shutdown(self, wait: bool) -> None:
        with self.lock:
            executor, self.executor = self.executor, None
            self.semaphores = weakref.WeakKeyDictionary()
        if executor is not None:
            executor.shutdown(wait=wait, cancel_futures=not wait)


_cpus = os.cpu_count() or 1
_threads = _Lane("thread")
_processes = _Lane("process")


def _after_fork_in_child() -> None:  # pragma: no cover - runs in forked children (tested there)
    _threads.after_fork_in_child()
    _processes.after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def configure_offload(
    *,
    max_threads: int | None = None,
    max_processes: int | None = None,
    max_pending: int | None = None,
) -> None:
    """Set the pool sizes and the bound on calls in each pool (see the module docstring)."""
    for field, value in (
        ("max_threads", max_threads),
        ("max_processes", max_processes),
        ("max_pending", max_pending),
    ):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise ValueError(f"configure_offload: {field!r} must be an int >= 1, got {value!r}")
    if _threads.executor is not None or _processes.executor is not None:
        raise RuntimeError("configure_offload() after first use: call shutdown_offload() first")
    _threads.workers = max_threads or min(32, _cpus + 4)
    _processes.workers = max_processes or _cpus
    _threads.max_pending = max_pending or 4 * _threads.workers
    _processes.max_pending = max_pending or 4 * _processes.workers


configure_offload()


async def to_thread(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run blocking ``fn(*args, **kwargs)`` on the bounded thread pool; see module docstring."""
    context = contextvars.copy_context()
    call = functools.partial(context.run, fn, *args, **kwargs)
    return await _threads.submit(call)


async def to_process(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run CPU-bound ``fn(*args, **kwargs)`` in the bounded process pool (picklable ``fn``)."""
    call = functools.partial(fn, *args, **kwargs)
    return await _processes.submit(call)


def shutdown_offload(wait: bool = True) -> None:
    """Stop both pools; ``wait=False`` drops queued calls and does not wait for running ones."""
    _threads.shutdown(wait)
    _processes.shutdown(wait)


def offload_statistics() -> OffloadStatistics:
    return OffloadStatistics(
        max_threads=_threads.workers,
        thread_calls_in_pool=_threads.in_pool,
        max_processes=_processes.workers,
        process_calls_in_pool=_processes.in_pool,
        max_pending=_threads.max_pending,
    )
