"""Feed an event loop from other threads without ever blocking the loop.

``ThreadBridge(capacity, on_full=...)`` is bound to the loop that creates it (or ``loop=``).
Threads call ``bridge.send(item)``, which never waits on the loop; the loop side consumes with
``await bridge.recv()``, ``recv_nowait()``, ``recv_many()`` or ``async for``.

When full (``capacity`` items queued), ``on_full`` decides, in the sending thread:

- ``"reject"`` (default): ``send`` raises ``WouldBlock``; the thread decides (retry, drop, ...).
- ``"drop_newest"``: the new item is dropped and counted (``statistics().dropped``).
- ``"drop_oldest"``: the oldest queued item is dropped and counted, the new one is queued.

What this relies on, stated honestly:

- On CPython with the GIL, ``deque.append`` and ``deque.popleft`` are atomic, so threads and the
  loop share the deque with no lock at all. The capacity check and the append are two steps, so
  with several producer threads the queue may exceed ``capacity`` by at most (threads - 1).
- Wake-ups use ``loop.call_soon_threadsafe`` only when the loop side is actually waiting (a flag
  it sets before sleeping and re-checks after): a busy consumer costs the producers nothing
  beyond the append. The handshake (producer: append, then read the flag; consumer: set the
  flag, then re-check the deque) needs the two threads to observe each other's writes in order,
  which the GIL guarantees.
- Free-threaded CPython (3.13t+): deque operations stay atomic (each takes the object's
  critical section), and those critical sections also order the handshake, so the design is
  expected to hold; the counters (``sent``/``dropped``) may then under-count under races. This
  module has not been tested on a free-threaded build.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, Literal, NamedTuple, TypeVar

from flowcoro.core.channel import EndOfChannel
from flowcoro.core.errors import ClosedResourceError, WouldBlock

__all__ = ["ThreadBridge", "BridgeStatistics"]

T = TypeVar("T")
OnFull = Literal["reject", "drop_newest", "drop_oldest"]


class BridgeStatistics(NamedTuple):
    capacity: int
    size: int
    sent: int
    received: int
    dropped: int
    wakeups: int
    closed: bool


class ThreadBridge(Generic[T]):
    """A bounded thread -> loop hand-off; see the module docstring for the policy."""

    __slots__ = (
        "_capacity",
        "_closed",
        "_dropped",
        "_items",
        "_loop",
        "_name",
        "_on_full",
        "_received",
        "_sent",
        "_waiter",
        "_wakeups",
    )

    def __init__(
        self,
        capacity: int = 10_000,
        *,
        on_full: OnFull = "reject",
        loop: asyncio.AbstractEventLoop | None = None,
        name: str = "bridge",
    ) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"ThreadBridge: 'capacity' must be an int >= 1, got {capacity!r}")
        if on_full not in ("reject", "drop_newest", "drop_oldest"):
            raise ValueError(
                "ThreadBridge: 'on_full' must be 'reject', 'drop_newest' or 'drop_oldest', "
                f"got {on_full!r}"
            )
        self._loop = loop if loop is not None else asyncio.get_running_loop()
        self._capacity = capacity
        self._on_full = on_full
        self._name = name
        self._items: deque[T] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._sent = self._received = self._dropped = self._wakeups = 0

    # ------------------------------------------------------------------ thread side

    def send(self, item: T) -> bool:
        """Queue ``item`` from any thread (also the loop's). Never blocks.

        Returns False when the item was dropped by the ``drop_newest`` policy.
        """
        if self._closed:
            raise ClosedResourceError(f"bridge {self._name!r} is closed")
        items = self._items
        if len(items) >= self._capacity:
            if self._on_full == "reject":
                raise WouldBlock(f"bridge {self._name!r} is full (capacity={self._capacity})")
            self._dropped += 1
            if self._on_full == "drop_newest":
                return False
            try:
                items.popleft()
            except IndexError:  # pragma: no cover - drained by the loop in between
                pass
        items.append(item)
        self._sent += 1
        if self._waiter is not None:
            self._wake()
        return True

    def _wake(self) -> None:
        try:
            self._loop.call_soon_threadsafe(self._on_wake)
        except RuntimeError as exc:  # the loop is closed
            raise ClosedResourceError(f"bridge {self._name!r}: its event loop is closed") from exc

    def _on_wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            self._wakeups += 1
            waiter.set_result(None)

    # ------------------------------------------------------------------ loop side

    def recv_nowait(self) -> T:
        try:
            item = self._items.popleft()
        except IndexError:
            if self._closed:
                raise EndOfChannel(f"bridge {self._name!r} is closed and drained") from None
            raise WouldBlock(f"bridge {self._name!r} is empty") from None
        self._received += 1
        return item

    async def recv(self) -> T:
        """Receive the next item (loop side only); ``EndOfChannel`` once closed and drained."""
        items = self._items
        while True:
            if items:
                self._received += 1
                return items.popleft()
            await self._wait()

    async def recv_many(self, max_items: int = 1024) -> list[T]:
        """Receive between 1 and ``max_items`` items, waiting only when none is queued."""
        if max_items < 1:
            raise ValueError(f"recv_many: 'max_items' must be >= 1, got {max_items!r}")
        items = self._items
        while not items:
            await self._wait()
        out: list[T] = []
        popleft = items.popleft
        while items and len(out) < max_items:
            out.append(popleft())
        self._received += len(out)
        return out

    async def _wait(self) -> None:
        if self._closed:
            raise EndOfChannel(f"bridge {self._name!r} is closed and drained")
        if self._waiter is not None:
            raise RuntimeError(f"bridge {self._name!r}: only one task may receive at a time")
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._waiter = waiter
        try:
            # Re-check after publishing the waiter: a producer that appended before seeing it
            # did not wake us, so look again before sleeping.
            if not self._items and not self._closed:
                await waiter
        finally:
            self._waiter = None

    def __aiter__(self) -> ThreadBridge[T]:
        return self

    async def __anext__(self) -> T:
        try:
            return await self.recv()
        except EndOfChannel:
            raise StopAsyncIteration from None

    def close(self) -> None:
        """Refuse new items (from any thread); the loop side drains what is queued."""
        self._closed = True
        if self._waiter is not None:
            try:
                self._loop.call_soon_threadsafe(self._on_wake)
            except RuntimeError:
                pass

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return len(self._items)

    def statistics(self) -> BridgeStatistics:
        return BridgeStatistics(
            capacity=self._capacity,
            size=len(self._items),
            sent=self._sent,
            received=self._received,
            dropped=self._dropped,
            wakeups=self._wakeups,
            closed=self._closed,
        )

    def __repr__(self) -> str:
        return f"<ThreadBridge {self._name!r} {len(self._items)}/{self._capacity}>"
