"""A generic, cancellation-safe async resource pool (connections, clients, sessions).

Policy, stated once:

- **Slots.** At most ``max_size`` resources exist at once, counting those being created. A waiter
  is served first-come first-served: a released resource (or the slot of a closed one) is handed
  straight to the oldest waiter, so late arrivals never barge ahead.
- **Cancellation.** A cancelled ``get()`` removes its waiter in ``finally``; if a resource (or a
  slot) was handed to it in the same instant, it is given back, so no slot ever leaks. A holder
  that leaves ``async with pool.acquire()`` through a cancellation (or any ``BaseException`` that
  is not an ``Exception``) never returns the resource: it may be mid-protocol, so it is closed and
  its slot freed. An ordinary exception also discards it unless the pool was made with
  ``discard_on_error=False``. ``pool.discard(r)`` marks a held resource broken explicitly.
- **Health.** ``health_check(r)`` (async; returning False or raising means unhealthy) runs on
  acquire when the resource has been idle for at least ``health_check_after`` seconds; an unhealthy
  resource is closed and the next one tried. ``max_idle`` closes resources idle that long (never
  below ``min_size``), ``max_lifetime`` closes resources that old when they are next released or
  picked. A background task keeps ``min_size`` resources open, backing off when the factory fails.
- **Timeouts.** ``get()`` waits at most the smaller of its ``timeout`` (default
  ``acquire_timeout``) and the caller's ``deadline``; creation by the factory counts in that time.
  On expiry ``PoolTimeout`` names the pool and its limits.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, ClassVar, Generic, NamedTuple, TypeVar

from flowcoro.core.deadline import effective_timeout
from flowcoro.core.errors import ClosedResourceError, PoolTimeout

__all__ = ["Pool", "PoolStatistics"]

T = TypeVar("T")

_monotonic = time.monotonic
_TIMED_OUT: Any = object()  # result of a waiter future whose timer fired
_SLOT: Any = object()  # result of a waiter future handed a free slot (create a resource)
_WAIT_SAMPLES = 1024


class PoolStatistics(NamedTuple):
    """A snapshot of a pool (names follow OpenTelemetry's ``db.client.connection.*`` metrics)."""

    name: str
    min_size: int
    max_size: int
    size: int  # open resources + those being created
    created: int
    closed: int
    in_use: int
    idle: int
    waiting: int
    acquisitions: int  # successful get()s
    reuses: int  # acquisitions served by an existing resource
    reuse_ratio: float  # reuses / acquisitions (0.0 before the first)
    timeouts: int
    create_errors: int
    close_errors: int
    discarded: int  # resources closed because broken, unhealthy, expired or cancelled mid-use
    wait_p50: float  # seconds, over the last 1024 acquisitions
    wait_p90: float
    wait_p99: float
    wait_max: float


class _Entry(Generic[T]):
    __slots__ = ("broken", "created_at", "released_at", "resource")

    def __init__(self, resource: T, now: float) -> None:
        self.resource = resource
        self.created_at = now
        self.released_at = now
        self.broken = False


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, math.ceil(q * len(sorted_values)) - 1)
    return sorted_values[max(index, 0)]


async def _default_close(resource: Any) -> None:
    closer = getattr(resource, "aclose", None) or getattr(resource, "close", None)
    if closer is not None:
        result = closer()
        if inspect.isawaitable(result):
            await result


class Pool(Generic[T]):
    """A bounded pool of resources made by ``factory`` (an async callable).

    ``async with pool.acquire() as r:`` for a block; ``r = await pool.get()`` then
    ``await pool.put(r)`` (or ``put(r, discard=True)``) for a lease that outlives a block.
    ``close`` (sync or async) closes a resource; by default its ``aclose()`` or ``close()``.
    """

    _registry: ClassVar[weakref.WeakSet[Pool[Any]]] = weakref.WeakSet()

    def __init__(
        self,
        factory: Callable[[], Awaitable[T]],
        *,
        name: str = "pool",
        min_size: int = 0,
        max_size: int = 10,
        acquire_timeout: float | None = 30.0,
        health_check: Callable[[T], Awaitable[object]] | None = None,
        health_check_after: float = 1.0,
        max_idle: float | None = None,
        max_lifetime: float | None = None,
        close: Callable[[T], Awaitable[None] | None] | None = None,
        discard_on_error: bool = True,
    ) -> None:
        if not callable(factory):
            raise TypeError("Pool: 'factory' must be an async callable returning a resource")
        if not isinstance(max_size, int) or max_size < 1:
            raise ValueError(f"Pool: 'max_size' must be an int >= 1, got {max_size!r}")
        if not isinstance(min_size, int) or not 0 <= min_size <= max_size:
            raise ValueError(f"Pool: 'min_size' must be an int in [0, max_size], got {min_size!r}")
        for field, value in (
            ("acquire_timeout", acquire_timeout),
            ("max_idle", max_idle),
            ("max_lifetime", max_lifetime),
        ):
            if value is not None and not value > 0:
                raise ValueError(f"Pool: {field!r} must be > 0 or None, got {value!r}")
        if not health_check_after >= 0:
            raise ValueError(f"Pool: 'health_check_after' must be >= 0, got {health_check_after!r}")
        self.name = name
        self.min_size = min_size
        self.max_size = max_size
        self.acquire_timeout = acquire_timeout
        self._factory = factory
        self._health_check = health_check
        self._health_check_after = health_check_after
        self._max_idle = max_idle
        self._max_lifetime = max_lifetime
        self._close = close if close is not None else _default_close
        self._discard_on_error = discard_on_error
        self._expiring = max_idle is not None or max_lifetime is not None
        self._idle: deque[_Entry[T]] = deque()  # LIFO at the right: warm resources are reused
        self._in_use: dict[int, _Entry[T]] = {}
        self._waiters: deque[asyncio.Future[Any]] = deque()
        # One timer for all waiters (the earliest expiry), not one per wait: cheaper under
        # contention, where every acquire waits.
        self._expiries: dict[asyncio.Future[Any], float] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._size = 0
        self._closed = False
        self._closing: set[asyncio.Task[None]] = set()
        self._maintainer: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._waits: deque[float] = deque(maxlen=_WAIT_SAMPLES)
        self._created = self._closed_count = self._acquisitions = self._reuses = 0
        self._timeouts = self._create_errors = self._close_errors = self._discarded = 0
        Pool._registry.add(self)

    # ----------------------------------------------------------------------- public API

    @classmethod
    def instances(cls) -> list[Pool[Any]]:
        """The pools alive in this process (a weak registry, for metrics exporters)."""
        return list(cls._registry)

    @property
    def closed(self) -> bool:
        return self._closed

    def acquire(self, timeout: float | None = None) -> _Acquire[T]:
        """``async with pool.acquire() as r:`` — see the module docstring for the policy."""
        return _Acquire(self, timeout)

    async def open(self) -> None:
        """Create ``min_size`` resources now and start the maintenance task (optional)."""
        self._check_open()
        self._start_maintainer()
        while self._size < self.min_size:
            self._size += 1
            try:
                entry = await self._create(None)
            except BaseException:
                self._free_slot()
                raise
            self._idle.append(entry)
            self._hand_over()

    async def get(self, timeout: float | None = None) -> T:
        """Lease a resource; give it back with ``put``. Waits at most ``timeout`` seconds
        (default ``acquire_timeout``), bounded by the caller's deadline."""
        self._check_open()
        if self._maintainer is None:
            self._start_maintainer()
        # Fast path: a warm idle resource, nobody queued before us and no health check due.
        if self._idle and not self._waiters and self._health_check is None:
            entry = self._idle.pop()
            if not self._expiring or self._fresh(entry):
                return self._lend(entry, reused=True, waited=0.0)
            self._retire(entry)
        limit = effective_timeout(self.acquire_timeout if timeout is None else timeout)
        started = _monotonic()
        expires = None if limit is None else started + limit
        while True:
            entry_or_slot = await self._next(expires, limit)
            if entry_or_slot is _SLOT:
                try:
                    entry = await self._create(expires)
                except BaseException:
                    self._free_slot()
                    raise
                return self._lend(entry, reused=False, waited=_monotonic() - started)
            entry = entry_or_slot
            if self._expiring and not self._fresh(entry):
                self._retire(entry)
                continue
            if self._health_check is None or await self._healthy(entry):
                return self._lend(entry, reused=True, waited=_monotonic() - started)

    async def put(self, resource: T, discard: bool = False) -> None:
        """Give back a leased resource; ``discard=True`` closes it (it is broken)."""
        self._release(resource, discard)

    def put_nowait(self, resource: T, discard: bool = False) -> None:
        """``put`` without awaiting (closing, if any, happens in a background task)."""
        self._release(resource, discard)

    def is_lent(self, resource: T) -> bool:
        """True while ``resource`` is lent out by this pool (not yet given back)."""
        return id(resource) in self._in_use

    def discard(self, resource: T) -> None:
        """Mark a resource held by the caller as broken: it is closed when it is given back."""
        entry = self._in_use.get(id(resource))
        if entry is None:
            raise ValueError(f"pool {self.name!r}: discard() of a resource it did not lend")
        entry.broken = True

    def statistics(self) -> PoolStatistics:
        waits = sorted(self._waits)
        acq = self._acquisitions
        return PoolStatistics(
            name=self.name,
            min_size=self.min_size,
            max_size=self.max_size,
            size=self._size,
            created=self._created,
            closed=self._closed_count,
            in_use=len(self._in_use),
            idle=len(self._idle),
            waiting=sum(1 for w in self._waiters if not w.done()),
            acquisitions=acq,
            reuses=self._reuses,
            reuse_ratio=self._reuses / acq if acq else 0.0,
            timeouts=self._timeouts,
            create_errors=self._create_errors,
            close_errors=self._close_errors,
            discarded=self._discarded,
            wait_p50=_percentile(waits, 0.50),
            wait_p90=_percentile(waits, 0.90),
            wait_p99=_percentile(waits, 0.99),
            wait_max=waits[-1] if waits else 0.0,
        )

    async def aclose(self) -> None:
        """Close the pool: waiters get ``ClosedResourceError``, idle resources are closed now,
        resources still lent out are closed when they are given back."""
        if not self._closed:
            self._closed = True
            while self._waiters:
                waiter = self._waiters.popleft()
                if not waiter.done():
                    waiter.set_exception(self._closed_error())
            while self._idle:
                self._retire(self._idle.pop(), count_discard=False)
            if self._maintainer is not None:
                self._maintainer.cancel()
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        if self._maintainer is not None:
            await asyncio.gather(self._maintainer, return_exceptions=True)
        while self._closing:
            await asyncio.gather(*list(self._closing), return_exceptions=True)

    async def __aenter__(self) -> Pool[T]:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return (
            f"<Pool {self.name!r} size={self._size}/{self.max_size} "
            f"in_use={len(self._in_use)} idle={len(self._idle)}>"
        )

    # ----------------------------------------------------------------------- internals

    def _check_open(self) -> None:
        if self._closed:
            raise self._closed_error()

    def _closed_error(self) -> ClosedResourceError:
        return ClosedResourceError(f"pool {self.name!r} is closed")

    async def _next(self, expires: float | None, limit: float | None) -> Any:
        """An idle entry, or ``_SLOT`` (a reserved slot to create into), waiting if needed."""
        if not self._waiters:
            if self._idle:
                return self._idle.pop()
            if self._size < self.max_size:
                self._size += 1
                return _SLOT
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Any] = loop.create_future()
        self._waiters.append(waiter)
        if expires is not None:
            self._expiries[waiter] = expires
            if self._timer is None or expires < self._timer_at:
                self._arm(loop, expires)
        try:
            result = await waiter
        except BaseException:
            # Cancelled (or the pool closed). If a resource or slot was handed to us in the same
            # instant, give it back so it is not lost.
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._give_back(waiter.result())
            raise
        finally:
            if expires is not None:
                del self._expiries[waiter]
            # Handed-over waiters were already popped; the others remove themselves here.
            if not waiter.done() or waiter.cancelled() or waiter.result() is _TIMED_OUT:
                try:
                    self._waiters.remove(waiter)
                except ValueError:
                    pass
        if result is _TIMED_OUT:
            self._timeouts += 1
            raise PoolTimeout(
                f"pool {self.name!r}: no resource free within {limit or 0.0:g}s "
                f"(max_size={self.max_size}, in_use={len(self._in_use)}, "
                f"waiting={len(self._waiters)}, acquire_timeout={self.acquire_timeout})"
            )
        return result

    def _arm(self, loop: asyncio.AbstractEventLoop, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = loop.call_at(loop.time() + (at - _monotonic()), self._on_timer, loop)

    def _on_timer(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        now = _monotonic() + 0.0005  # timers may fire a hair early (uvloop: ms resolution)
        earliest: float | None = None
        for waiter, at in self._expiries.items():
            if waiter.done():
                continue
            if at <= now:
                waiter.set_result(_TIMED_OUT)
            elif earliest is None or at < earliest:
                earliest = at
        if earliest is not None:
            self._arm(loop, earliest)

    def _give_back(self, result: Any) -> None:
        if result is _SLOT:
            self._free_slot()
        elif result is not _TIMED_OUT:
            self._idle.append(result)
            self._hand_over()

    async def _create(self, expires: float | None) -> _Entry[T]:
        try:
            if expires is None:
                resource = await self._factory()
            else:
                loop = asyncio.get_running_loop()
                async with asyncio.timeout_at(loop.time() + (expires - _monotonic())):
                    resource = await self._factory()
        except TimeoutError as exc:
            self._create_errors += 1
            self._timeouts += 1
            raise PoolTimeout(
                f"pool {self.name!r}: creating a resource did not finish in time "
                f"(max_size={self.max_size}, acquire_timeout={self.acquire_timeout})"
            ) from exc
        except Exception:
            self._create_errors += 1
            raise
        self._created += 1
        return _Entry(resource, _monotonic())

    def _fresh(self, entry: _Entry[T]) -> bool:
        now = _monotonic()
        if self._max_lifetime is not None and now - entry.created_at >= self._max_lifetime:
            return False
        return self._max_idle is None or now - entry.released_at < self._max_idle

    async def _healthy(self, entry: _Entry[T]) -> bool:
        check = self._health_check
        if check is None or _monotonic() - entry.released_at < self._health_check_after:
            return True
        try:
            ok = await check(entry.resource)
        except Exception:
            ok = False
        except BaseException:
            # Cancelled mid-check: the resource may be mid-protocol, never reuse it.
            self._retire(entry)
            raise
        if ok is False:
            self._retire(entry)
            return False
        return True

    def _lend(self, entry: _Entry[T], *, reused: bool, waited: float) -> T:
        entry.broken = False
        self._in_use[id(entry.resource)] = entry
        self._acquisitions += 1
        if reused:
            self._reuses += 1
        self._waits.append(waited)
        return entry.resource

    def _release(self, resource: T, discard: bool) -> None:
        entry = self._in_use.pop(id(resource), None)
        if entry is None:
            raise ValueError(f"pool {self.name!r}: put() of a resource it did not lend")
        now = _monotonic()
        if (
            discard
            or entry.broken
            or self._closed
            or (self._max_lifetime is not None and now - entry.created_at >= self._max_lifetime)
        ):
            self._retire(entry, count_discard=discard or entry.broken)
            return
        entry.released_at = now
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(entry)
                return
        self._idle.append(entry)

    def _hand_over(self) -> None:
        """Give an idle entry to the oldest live waiter, if both exist."""
        while self._waiters and self._idle:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(self._idle.pop())

    def _free_slot(self) -> None:
        """A slot became free: hand it to the oldest live waiter, or shrink the pool."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(_SLOT)
                return
        self._size -= 1
        if self._wake is not None and self._size < self.min_size:
            self._wake.set()

    def _retire(self, entry: _Entry[T], count_discard: bool = True) -> None:
        """Close an entry in the background and free its slot now."""
        if count_discard:
            self._discarded += 1
        self._closed_count += 1
        try:
            task = asyncio.get_running_loop().create_task(self._close_one(entry.resource))
        except RuntimeError:  # pragma: no cover - no loop: garbage collection will do
            pass
        else:
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        self._free_slot()

    async def _close_one(self, resource: T) -> None:
        try:
            result = self._close(resource)
            if inspect.isawaitable(result):
                await result
        except Exception:
            self._close_errors += 1

    def _start_maintainer(self) -> None:
        if self._maintainer is None and (
            self.min_size > 0 or self._max_idle is not None or self._max_lifetime is not None
        ):
            self._wake = asyncio.Event()
            self._maintainer = asyncio.get_running_loop().create_task(self._maintain())

    async def _maintain(self) -> None:
        intervals = [1.0]
        if self._max_idle is not None:
            intervals.append(self._max_idle / 2)
        if self._max_lifetime is not None:
            intervals.append(self._max_lifetime / 2)
        interval = max(min(intervals), 0.01)
        backoff = 0.0
        wake = self._wake
        assert wake is not None
        while not self._closed:
            self._reap()
            while self._size < self.min_size and not self._closed:
                self._size += 1
                try:
                    entry = await self._create(None)
                except Exception:
                    self._free_slot()
                    backoff = min(max(backoff * 2, 0.05), 5.0)
                    break
                except BaseException:
                    self._free_slot()
                    raise
                backoff = 0.0
                self._idle.appendleft(entry)
                self._hand_over()
            wake.clear()
            delay = backoff if backoff else interval
            try:
                async with asyncio.timeout(delay):
                    await wake.wait()
            except TimeoutError:
                pass

    def _reap(self) -> None:
        now = _monotonic()
        keep: deque[_Entry[T]] = deque()
        while self._idle:
            entry = self._idle.popleft()
            expired_idle = self._max_idle is not None and now - entry.released_at >= self._max_idle
            too_old = (
                self._max_lifetime is not None and now - entry.created_at >= self._max_lifetime
            )
            if too_old or (expired_idle and self._size > self.min_size):
                self._retire(entry)
            else:
                keep.append(entry)
        self._idle.extend(keep)


class _Acquire(Generic[T]):
    """The async context manager returned by ``Pool.acquire()``."""

    __slots__ = ("_pool", "_resource", "_timeout")

    def __init__(self, pool: Pool[T], timeout: float | None) -> None:
        self._pool = pool
        self._timeout = timeout
        self._resource: T | None = None

    async def __aenter__(self) -> T:
        resource = await self._pool.get(self._timeout)
        self._resource = resource
        return resource

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        resource = self._resource
        self._resource = None
        if resource is None:
            return
        pool = self._pool
        if id(resource) not in pool._in_use:
            return  # already given back with put() inside the block
        broken = exc_type is not None and (
            pool._discard_on_error or not issubclass(exc_type, Exception)
        )
        pool._release(resource, broken)
