"""A bounded multi-producer multi-consumer channel for one event loop.

Design (why it is fast): items live in a ``collections.deque``; futures are created only when a
task really has to wait (a send or receive that finds room or an item never suspends), and an
item sent while a receiver waits is handed straight to that receiver. Within one loop no locks
are needed: every method runs to completion between two awaits.

Semantics:

- ``send`` waits for room; senders are served first-come first-served (space freed by a receive
  is reserved for the oldest waiting sender, so no one barges ahead). ``send_nowait`` raises
  ``WouldBlock`` when full. Sending on a closed channel raises ``ClosedResourceError``.
- ``recv`` waits for an item; ``recv_nowait`` raises ``WouldBlock`` when empty. On a closed and
  drained channel both raise ``EndOfChannel`` (a ``ClosedResourceError``) and ``async for`` ends.
- Cancellation is exact: a ``send`` that raises (cancelled, closed) did not deliver its item; a
  ``recv`` that is cancelled after an item was handed to it puts that item back at the head of
  the channel (or hands it to the next waiting receiver), so nothing is lost or duplicated.

Not thread-safe: use it from the loop that runs it. Threads feed a loop through
``flowcoro.core.bridge.ThreadBridge``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from types import TracebackType
from typing import Generic, NamedTuple, TypeVar

from flowcoro.core.errors import ClosedResourceError, WouldBlock

__all__ = ["Channel", "ChannelStatistics", "EndOfChannel"]

T = TypeVar("T")


class EndOfChannel(ClosedResourceError):
    """The channel is closed and every item sent before closing has been received."""


_CLOSED_ROOM = -(1 << 62)


class ChannelStatistics(NamedTuple):
    capacity: int
    size: int  # items buffered now
    sent: int  # items accepted (delivered or buffered)
    received: int
    senders_waiting: int
    receivers_waiting: int
    closed: bool


class Channel(Generic[T]):
    """A bounded channel of ``capacity`` items (>= 1); see the module docstring."""

    __slots__ = (
        "__weakref__",
        "_buffer",
        "_capacity",
        "_closed",
        "_name",
        "_received",
        "_receivers",
        "_reserved",
        "_room",
        "_senders",
    )

    def __init__(self, capacity: int = 1024, *, name: str = "channel") -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"Channel: 'capacity' must be an int >= 1, got {capacity!r}")
        self._capacity = capacity
        self._name = name
        self._buffer: deque[T] = deque()
        self._receivers: deque[asyncio.Future[T]] = deque()
        self._senders: deque[asyncio.Future[None]] = deque()
        self._reserved = 0  # room promised to woken senders that have not run yet
        self._received = 0
        self._closed = False
        # How many items a send may append without looking at anything else: the free room
        # when the channel is open and no receiver waits, 0 while receivers wait (a send must
        # hand over instead), hugely negative once closed. The fast paths keep it exact; every
        # slow path recomputes it (_sync_room).
        self._room = capacity

    def _sync_room(self) -> None:
        if self._closed:
            self._room = _CLOSED_ROOM
        elif self._receivers:
            self._room = 0
        else:
            self._room = self._capacity - len(self._buffer) - self._reserved

    # ------------------------------------------------------------------ sending

    async def send(self, item: T) -> None:
        """Send ``item``, waiting for room (FIFO among waiting senders)."""
        if self._room > 0:
            self._room -= 1
            self._buffer.append(item)
            return
        if not self._send_slow(item):
            await self._send_wait(item)

    def send_nowait(self, item: T) -> None:
        """Send without waiting; ``WouldBlock`` when full, ``ClosedResourceError`` when closed."""
        if self._room > 0:
            self._room -= 1
            self._buffer.append(item)
            return
        if not self._send_slow(item):
            raise WouldBlock(f"channel {self._name!r} is full (capacity={self._capacity})")

    def _send_slow(self, item: T) -> bool:
        """Hand ``item`` to a waiting receiver or buffer it; False when the sender must wait."""
        if self._closed:
            raise self._closed_error()
        receivers = self._receivers
        while receivers:
            waiter = receivers.popleft()
            if not waiter.done():
                waiter.set_result(item)
                self._sync_room()
                return True
        self._sync_room()
        if self._room > 0:
            self._room -= 1
            self._buffer.append(item)
            return True
        return False

    async def send_many(self, items: Iterable[T]) -> None:
        """Send every item in order (waiting for room as needed)."""
        for item in items:
            await self.send(item)

    async def _send_wait(self, item: T) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._senders.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                # Room was reserved for us as we were cancelled: pass it on.
                self._reserved -= 1
                self._wake_sender()
                self._sync_room()
            elif not waiter.done() or waiter.cancelled():
                try:
                    self._senders.remove(waiter)
                except ValueError:
                    pass
            raise
        self._reserved -= 1
        if self._closed:
            raise self._closed_error()
        receivers = self._receivers
        while receivers:
            receiver = receivers.popleft()
            if not receiver.done():
                receiver.set_result(item)
                # The room reserved for us is still free: pass it to the next sender.
                self._wake_sender()
                self._sync_room()
                return
        self._buffer.append(item)  # takes the room reserved for us: _room is unchanged

    def _wake_sender(self) -> bool:
        senders = self._senders
        while senders:
            waiter = senders.popleft()
            if not waiter.done():
                self._reserved += 1
                waiter.set_result(None)
                return True
        return False

    # ------------------------------------------------------------------ receiving

    async def recv(self) -> T:
        """Receive the next item, waiting for one; ``EndOfChannel`` once closed and drained."""
        try:
            item = self._buffer.popleft()
        except IndexError:
            return await self._recv_wait()
        self._received += 1
        if not (self._senders and self._wake_sender()):
            self._room += 1
        return item

    def recv_nowait(self) -> T:
        """Receive without waiting; ``WouldBlock`` when empty, ``EndOfChannel`` when drained."""
        try:
            item = self._buffer.popleft()
        except IndexError:
            if self._closed:
                raise self._end() from None
            raise WouldBlock(f"channel {self._name!r} is empty") from None
        self._received += 1
        if not (self._senders and self._wake_sender()):
            self._room += 1
        return item

    async def recv_many(self, max_items: int = 1024) -> list[T]:
        """Receive between 1 and ``max_items`` items, waiting only when none is buffered."""
        if max_items < 1:
            raise ValueError(f"recv_many: 'max_items' must be >= 1, got {max_items!r}")
        buffer = self._buffer
        items = [] if buffer else [await self._recv_wait()]
        take = min(max_items - len(items), len(buffer))
        popleft = buffer.popleft
        for _ in range(take):
            items.append(popleft())
        self._received += take
        for _ in range(take):
            if not (self._senders and self._wake_sender()):
                break
        self._sync_room()
        return items

    async def _recv_wait(self) -> T:
        if self._closed:
            raise self._end()
        waiter: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._receivers.append(waiter)
        self._room = 0  # sends must hand over to us now, not buffer
        try:
            item = await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                # An item was handed to us as we were cancelled: put it back, nothing is lost.
                self._put_back(waiter.result())
            elif not waiter.done() or waiter.cancelled():
                try:
                    self._receivers.remove(waiter)
                except ValueError:
                    pass
            self._sync_room()
            raise
        self._received += 1
        return item

    def _put_back(self, item: T) -> None:
        receivers = self._receivers
        while receivers:
            waiter = receivers.popleft()
            if not waiter.done():
                waiter.set_result(item)
                return
        self._buffer.appendleft(item)

    def __aiter__(self) -> Channel[T]:
        return self

    async def __anext__(self) -> T:
        try:
            item = self._buffer.popleft()
        except IndexError:
            try:
                return await self._recv_wait()
            except EndOfChannel:
                raise StopAsyncIteration from None
        self._received += 1
        if not (self._senders and self._wake_sender()):
            self._room += 1
        return item

    # ------------------------------------------------------------------ state

    def close(self) -> None:
        """Refuse new items; receivers drain what is buffered, then get ``EndOfChannel``.
        Waiting senders get ``ClosedResourceError`` (their items were not delivered)."""
        if self._closed:
            return
        self._closed = True
        self._room = _CLOSED_ROOM
        while self._senders:
            waiter = self._senders.popleft()
            if not waiter.done():
                waiter.set_exception(self._closed_error())
        while self._receivers:
            receiver = self._receivers.popleft()
            if not receiver.done():
                receiver.set_exception(self._end())

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def capacity(self) -> int:
        return self._capacity

    def __len__(self) -> int:
        return len(self._buffer)

    def statistics(self) -> ChannelStatistics:
        size = len(self._buffer)
        return ChannelStatistics(
            capacity=self._capacity,
            size=size,
            sent=self._received + size,
            received=self._received,
            senders_waiting=sum(1 for w in self._senders if not w.done()),
            receivers_waiting=sum(1 for w in self._receivers if not w.done()),
            closed=self._closed,
        )

    async def __aenter__(self) -> Channel[T]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Channel {self._name!r} {len(self._buffer)}/{self._capacity} {state}>"

    def _closed_error(self) -> ClosedResourceError:
        return ClosedResourceError(f"channel {self._name!r} is closed")

    def _end(self) -> EndOfChannel:
        return EndOfChannel(f"channel {self._name!r} is closed and drained")
