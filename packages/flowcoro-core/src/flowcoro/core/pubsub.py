"""The in-process pub/sub broker (``PLUGIN_NAME = "memory"``): the default, and the reference
behaviour that other brokers (Redis, in flowcoro-db) follow.

Each subscription owns a bounded backlog (``pubsub_backlog``, default 1,000 messages). A slow
reader never slows the publisher: when its backlog is full the oldest message is dropped and
counted in `MemorySubscription.dropped`. Publishing never awaits a subscriber.
"""

from __future__ import annotations

import asyncio
import fnmatch
import re
from collections import deque
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from flowcoro.core.abc import Message, PubSubBroker, Subscription
from flowcoro.core.errors import ClosedResourceError

if TYPE_CHECKING:
    from typing import Self

    from flowcoro.core.settings import Settings

__all__ = ["BoundedSubscription", "MemoryBroker", "MemorySubscription"]

DEFAULT_BACKLOG = 1000


class BoundedSubscription(Subscription):
    """A subscription with a bounded backlog, shared by the brokers (memory here, Redis in
    flowcoro-db): a full backlog drops its oldest message and counts it in `dropped`, so a slow
    reader never slows the publisher. A broker hands messages over with `_deliver`, ends the
    subscription with `_close`, and forgets it in `_detach` (called once, by `aclose`)."""

    __slots__ = ("_backlog", "_closed", "_waiter", "channels", "dropped")

    def __init__(self, channels: tuple[str, ...], backlog: int) -> None:
        self.channels = channels
        self._backlog: deque[Message] = deque(maxlen=backlog)
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self.dropped = 0

    def _deliver(self, message: Message) -> None:
        if len(self._backlog) == self._backlog.maxlen:
            self.dropped += 1  # the deque drops the oldest on append
        self._backlog.append(message)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> Message:
        """The next message; `ClosedResourceError` once the subscription is closed and drained."""
        while not self._backlog:
            if self._closed:
                raise ClosedResourceError("subscription is closed")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._backlog.popleft()

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Message]:
        while True:
            try:
                yield await self.get()
            except ClosedResourceError:
                return

    def _close(self) -> None:
        """End the subscription: a waiting reader wakes; what is buffered can still be read."""
        self._closed = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _detach(self) -> None:
        """Remove this subscription from its broker (override)."""

    async def aclose(self) -> None:
        if not self._closed:
            self._close()
            self._detach()


class MemorySubscription(BoundedSubscription):
    __slots__ = ("_broker", "patterns")

    def __init__(
        self,
        broker: MemoryBroker,
        channels: tuple[str, ...],
        patterns: tuple[tuple[str, re.Pattern[str]], ...],
        backlog: int,
    ) -> None:
        super().__init__(channels, backlog)
        self._broker = broker
        self.patterns = patterns

    def _detach(self) -> None:
        self._broker._remove(self)


class MemoryBroker(PubSubBroker):
    """Pub/sub between tasks of one process."""

    PLUGIN_NAME = "memory"

    def __init__(self, *, backlog: int = DEFAULT_BACKLOG) -> None:
        if backlog < 1:
            raise ValueError(f"backlog must be at least 1, got {backlog!r}")
        self.backlog = backlog
        self._by_channel: dict[str, set[MemorySubscription]] = {}
        self._pattern_subs: set[MemorySubscription] = set()
        self._closed = False

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls(backlog=int(settings.get("pubsub_backlog") or DEFAULT_BACKLOG))

    async def publish(self, channel: str, data: bytes) -> int:
        if self._closed:
            raise ClosedResourceError("broker is closed")
        delivered = 0
        for sub in self._by_channel.get(channel, ()):
            sub._deliver(Message(channel, data))
            delivered += 1
        for sub in self._pattern_subs:
            for pattern, compiled in sub.patterns:
                if compiled.match(channel):
                    sub._deliver(Message(channel, data, pattern))
                    delivered += 1
        return delivered

    async def subscribe(self, *channels: str, patterns: tuple[str, ...] = ()) -> MemorySubscription:
        if self._closed:
            raise ClosedResourceError("broker is closed")
        if not channels and not patterns:
            raise ValueError("subscribe needs at least one channel or pattern")
        compiled = tuple((p, re.compile(fnmatch.translate(p))) for p in patterns)
        sub = MemorySubscription(self, tuple(channels), compiled, self.backlog)
        for channel in channels:
            self._by_channel.setdefault(channel, set()).add(sub)
        if compiled:
            self._pattern_subs.add(sub)
        return sub

    def _remove(self, sub: MemorySubscription) -> None:
        for channel in sub.channels:
            subs = self._by_channel.get(channel)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._by_channel[channel]
        self._pattern_subs.discard(sub)

    async def aclose(self) -> None:
        self._closed = True
        subs = {s for group in self._by_channel.values() for s in group} | self._pattern_subs
        for sub in subs:
            await sub.aclose()
