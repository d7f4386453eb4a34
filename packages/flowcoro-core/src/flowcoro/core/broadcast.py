"""Fan-out of every published item to every subscriber, each with its own bound.

    hub: Broadcast[bytes] = Broadcast(capacity=256, policy="drop_oldest")
    async with hub.subscribe() as sub:       # or capacity=/policy= per subscriber
        async for msg in sub: ...
    hub.publish_nowait(b"tick")              # or: await hub.publish(b"tick")

What happens when a subscriber is slow (its buffer of ``capacity`` items is full) is its
``policy``, stated up front:

- ``"drop_oldest"`` (default): the oldest buffered item is dropped to make room; the subscriber
  sees a gap, counted in ``sub.dropped``. Publishers never wait. (A live feed.)
- ``"disconnect"``: the subscriber is cut off; it still receives what was buffered, then
  ``BrokenResourceError`` saying it was too slow. Publishers never wait. (WebSocket clients that
  must not see gaps: they reconnect and resync.)
- ``"wait"``: backpressure. ``await publish()`` waits until every "wait" subscriber has room, at
  most ``wait_timeout`` seconds (default 5.0); subscribers still full then are disconnected, so
  one stuck consumer cannot stall the publisher forever. ``publish_nowait`` raises
  ``WouldBlock`` (delivering to no one) when a "wait" subscriber is full.

An item is delivered to the subscribers present when it is published. One event loop; no locks.
"""

from __future__ import annotations

import asyncio
from collections import deque
from types import TracebackType
from typing import Generic, Literal, NamedTuple, TypeVar

from flowcoro.core.channel import EndOfChannel
from flowcoro.core.errors import BrokenResourceError, ClosedResourceError, WouldBlock

__all__ = ["Broadcast", "Subscriber", "BroadcastStatistics", "SlowPolicy"]

T = TypeVar("T")
SlowPolicy = Literal["drop_oldest", "disconnect", "wait"]
_POLICIES = ("drop_oldest", "disconnect", "wait")


class BroadcastStatistics(NamedTuple):
    subscribers: int
    published: int
    dropped: int  # over all subscribers, including those gone
    disconnected: int
    closed: bool


def _check(capacity: int, policy: str) -> None:
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
        raise ValueError(f"Broadcast: 'capacity' must be an int >= 1, got {capacity!r}")
    if policy not in _POLICIES:
        raise ValueError(f"Broadcast: 'policy' must be one of {_POLICIES}, got {policy!r}")


class Subscriber(Generic[T]):
    """One subscriber's bounded inbox (from ``Broadcast.subscribe``); receive with ``recv`` or
    ``async for``. One task receives at a time."""

    __slots__ = (
        "_broadcast",
        "_items",
        "_receiver",
        "_room",
        "capacity",
        "closed",
        "disconnected",
        "dropped",
        "policy",
        "received",
    )

    def __init__(self, broadcast: Broadcast[T], capacity: int, policy: SlowPolicy) -> None:
        self._broadcast = broadcast
        self.capacity = capacity
        self.policy: SlowPolicy = policy
        self._items: deque[T] = deque()
        self._receiver: asyncio.Future[None] | None = None
        self._room: deque[asyncio.Future[None]] = deque()  # publishers waiting for room
        self.dropped = 0
        self.received = 0
        self.disconnected = False
        self.closed = False

    # -- publisher side

    def _full(self) -> bool:
        return len(self._items) >= self.capacity

    def _deliver(self, item: T) -> None:
        items = self._items
        if len(items) >= self.capacity:
            if self.policy == "drop_oldest":
                items.popleft()
                self.dropped += 1
                self._broadcast._dropped += 1
            else:
                self._disconnect()
                return
        items.append(item)
        receiver = self._receiver
        if receiver is not None and not receiver.done():
            receiver.set_result(None)

    def _disconnect(self) -> None:
        if not self.disconnected:
            self.disconnected = True
            self._broadcast._disconnected += 1
            self._broadcast._remove(self)
            self._wake_all()

    def _wake_all(self) -> None:
        if self._receiver is not None and not self._receiver.done():
            self._receiver.set_result(None)
        while self._room:
            waiter = self._room.popleft()
            if not waiter.done():
                waiter.set_result(None)

    # -- subscriber side

    def recv_nowait(self) -> T:
        items = self._items
        if items:
            item = items.popleft()
            self.received += 1
            if self._room:
                waiter = self._room.popleft()
                if not waiter.done():
                    waiter.set_result(None)
            return item
        self._raise_if_ended()
        raise WouldBlock("subscription has no item buffered")

    async def recv(self) -> T:
        """The next item; ``EndOfChannel`` after close, ``BrokenResourceError`` once
        disconnected for being too slow (after the buffered items)."""
        while True:
            if self._items:
                return self.recv_nowait()
            self._raise_if_ended()
            if self._receiver is not None:
                raise RuntimeError("only one task may receive from a subscription at a time")
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._receiver = waiter
            try:
                await waiter
            finally:
                self._receiver = None

    def _raise_if_ended(self) -> None:
        if self.disconnected:
            raise BrokenResourceError(
                f"subscriber disconnected: too slow for broadcast {self._broadcast.name!r} "
                f"(capacity={self.capacity}, policy={self.policy!r})"
            )
        if self.closed or self._broadcast.closed:
            raise EndOfChannel(f"broadcast {self._broadcast.name!r} subscription is closed")

    def __aiter__(self) -> Subscriber[T]:
        return self

    async def __anext__(self) -> T:
        try:
            return await self.recv()
        except EndOfChannel:
            raise StopAsyncIteration from None

    def close(self) -> None:
        """Unsubscribe: no further items; a waiting ``recv`` ends with ``EndOfChannel``."""
        if not self.closed:
            self.closed = True
            self._items.clear()
            self._broadcast._remove(self)
            self._wake_all()

    def __len__(self) -> int:
        return len(self._items)

    async def __aenter__(self) -> Subscriber[T]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Broadcast(Generic[T]):
    """Fan-out hub; see the module docstring for the slow-subscriber policies."""

    def __init__(
        self,
        *,
        capacity: int = 1024,
        policy: SlowPolicy = "drop_oldest",
        wait_timeout: float = 5.0,
        name: str = "broadcast",
    ) -> None:
        _check(capacity, policy)
        if not wait_timeout > 0:
            raise ValueError(f"Broadcast: 'wait_timeout' must be > 0, got {wait_timeout!r}")
        self.name = name
        self.capacity = capacity
        self.policy: SlowPolicy = policy
        self.wait_timeout = wait_timeout
        self._subs: dict[int, Subscriber[T]] = {}
        self._published = self._dropped = self._disconnected = 0
        self.closed = False

    def subscribe(
        self, *, capacity: int | None = None, policy: SlowPolicy | None = None
    ) -> Subscriber[T]:
        if self.closed:
            raise ClosedResourceError(f"broadcast {self.name!r} is closed")
        cap = self.capacity if capacity is None else capacity
        pol = self.policy if policy is None else policy
        _check(cap, pol)
        sub = Subscriber(self, cap, pol)
        self._subs[id(sub)] = sub
        return sub

    def _remove(self, sub: Subscriber[T]) -> None:
        self._subs.pop(id(sub), None)

    def publish_nowait(self, item: T) -> int:
        """Deliver to every subscriber now; the number it reached (see the policies)."""
        if self.closed:
            raise ClosedResourceError(f"broadcast {self.name!r} is closed")
        subs = list(self._subs.values())
        for sub in subs:
            if sub.policy == "wait" and sub._full():
                raise WouldBlock(
                    f"broadcast {self.name!r}: a 'wait' subscriber is full "
                    f"(capacity={sub.capacity})"
                )
        return self._fan_out(subs, item)

    async def publish(self, item: T) -> int:
        """Deliver to every subscriber, first waiting (at most ``wait_timeout``) for room in the
        "wait" subscribers; those still full then are disconnected."""
        if self.closed:
            raise ClosedResourceError(f"broadcast {self.name!r} is closed")
        loop = asyncio.get_running_loop()
        expires = loop.time() + self.wait_timeout
        while True:
            blocked = [s for s in self._subs.values() if s.policy == "wait" and s._full()]
            if not blocked:
                break
            left = expires - loop.time()
            if left <= 0:
                for sub in blocked:
                    sub._disconnect()
                break
            waiter: asyncio.Future[None] = loop.create_future()
            blocked[0]._room.append(waiter)
            handle = loop.call_later(left, _set_none, waiter)
            try:
                await waiter
            finally:
                handle.cancel()
                if not waiter.done() or waiter.cancelled():
                    try:
                        blocked[0]._room.remove(waiter)
                    except ValueError:
                        pass
            if self.closed:
                raise ClosedResourceError(f"broadcast {self.name!r} is closed")
        return self._fan_out(list(self._subs.values()), item)

    def _fan_out(self, subs: list[Subscriber[T]], item: T) -> int:
        self._published += 1
        reached = 0
        for sub in subs:
            sub._deliver(item)
            if not sub.disconnected:
                reached += 1
        return reached

    def close(self) -> None:
        """No more items; subscribers drain what they hold, then ``EndOfChannel``."""
        if not self.closed:
            self.closed = True
            for sub in list(self._subs.values()):
                sub._wake_all()
            self._subs.clear()

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def statistics(self) -> BroadcastStatistics:
        return BroadcastStatistics(
            subscribers=len(self._subs),
            published=self._published,
            dropped=self._dropped,
            disconnected=self._disconnected,
            closed=self.closed,
        )

    async def __aenter__(self) -> Broadcast[T]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _set_none(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
