"""Pub/sub: `PubSub` (one dedicated connection per instance), and `RedisBroker`, the Redis
implementation of the core `PubSubBroker` (``PLUGIN_NAME = "redis"``).

Slow readers: each subscription owns a bounded backlog (default 1,000 messages, setting
``pubsub_backlog``). When it is full the oldest message is dropped and counted in
`RedisSubscription.dropped` -- the same policy as the in-process broker -- so one slow reader never
stalls the connection or the other subscriptions.

Reconnects: when the connection drops, it is re-established in the background (backoff from
50 ms doubling to ``reconnect_backoff_max``, 2 s by default, for as long as the `PubSub` is open)
and every channel and pattern is subscribed again. Messages published while disconnected are lost
(Redis pub/sub is at-most-once; use streams for durable delivery).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Final, cast

from flowcoro.core.abc import Message, PubSubBroker
from flowcoro.core.deadline import effective_timeout
from flowcoro.core.errors import ClosedResourceError
from flowcoro.core.pubsub import BoundedSubscription
from flowcoro.db.errors import DBConnectionError, DBError, DBTimeoutError
from flowcoro.db.redis._resp import ProtocolError, ReplyError, pack_command
from flowcoro.db.redis.config import RedisConfig
from flowcoro.db.redis.connection import RedisConnection, Stats, open_connection, reply_error
from flowcoro.db.redis.errors import RedisProtocolError

if TYPE_CHECKING:
    from typing import Self

    from flowcoro.core.settings import Settings
    from flowcoro.db.redis.client import Redis

__all__ = ["PubSub", "RedisSubscription", "RedisBroker", "DEFAULT_BACKLOG"]

DEFAULT_BACKLOG: Final = 1000
_PUSH: Final = frozenset(
    {b"message", b"pmessage", b"subscribe", b"psubscribe", b"unsubscribe", b"punsubscribe"}
)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


class _PubSubConnection(RedisConnection):
    __slots__ = ("_owner",)

    def __init__(self, loop: asyncio.AbstractEventLoop, stats: Stats, owner: PubSub) -> None:
        super().__init__(loop, stats)
        self._owner = owner

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        while True:
            try:
                reply = reader.gets()
            except ProtocolError as exc:
                self.discard(RedisProtocolError(f"invalid reply from Redis: {exc}"))
                return
            if reply is False:
                return
            if reply.__class__ is list and reply and reply[0] in _PUSH:
                self._owner._on_push(reply)
            elif not self.waiters:
                self.discard(RedisProtocolError("Redis sent a reply no command was waiting for"))
                return
            else:
                fut = cast("asyncio.Future[Any]", self.waiters.popleft())  # no batches here
                if fut.done():
                    continue
                if reply.__class__ is ReplyError:
                    fut.set_exception(reply_error(reply))
                else:
                    fut.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._owner._on_lost(self)


class RedisSubscription(BoundedSubscription):
    """Messages for some channels and patterns; iterate it, close it to unsubscribe."""

    __slots__ = ("_owner", "patterns")

    def __init__(
        self, owner: PubSub, channels: tuple[str, ...], patterns: tuple[str, ...], backlog: int
    ) -> None:
        super().__init__(channels, backlog)
        self._owner = owner
        self.patterns = patterns

    def _detach(self) -> None:
        self._owner._remove(self)


class PubSub:
    """Subscriptions of one client over one dedicated connection (opened on first subscribe)."""

    def __init__(self, config: RedisConfig, *, backlog: int = DEFAULT_BACKLOG) -> None:
        if isinstance(backlog, bool) or not isinstance(backlog, int) or backlog < 1:
            raise ValueError(f"backlog must be an integer >= 1, got {backlog!r}")
        self.config = config
        self.backlog = backlog
        self.reconnects = 0
        self.client_id: int | None = None
        self._stats = Stats()
        self._channels: dict[str, set[RedisSubscription]] = {}
        self._patterns: dict[str, set[RedisSubscription]] = {}
        self._confirm: dict[tuple[bytes, str], asyncio.Future[None]] = {}
        self._conn: _PubSubConnection | None = None
        self._connecting: asyncio.Task[_PubSubConnection] | None = None
        self._closed = False

    # -- subscribing ---------------------------------------------------------------------------

    async def subscribe(self, *channels: str, patterns: tuple[str, ...] = ()) -> RedisSubscription:
        """Subscribe; on return the server has confirmed every channel and pattern."""
        if self._closed:
            raise ClosedResourceError("the pub/sub client is closed")
        if not channels and not patterns:
            raise ValueError("subscribe needs at least one channel or pattern")
        for name in (*channels, *patterns):
            if not isinstance(name, str) or not name:
                raise ValueError(f"channel and pattern names must be non-empty str, got {name!r}")
        sub = RedisSubscription(self, tuple(channels), tuple(patterns), self.backlog)
        new = [(b"SUBSCRIBE", c) for c in channels if c not in self._channels]
        new += [(b"PSUBSCRIBE", p) for p in patterns if p not in self._patterns]
        for c in channels:
            self._channels.setdefault(c, set()).add(sub)
        for p in patterns:
            self._patterns.setdefault(p, set()).add(sub)
        timeout = effective_timeout(self.config.command_timeout)
        try:
            async with asyncio.timeout(timeout):
                conn = await self._connection()
                if new:
                    self._send(conn, new)
                waits = [self._confirm.get((b"subscribe", c)) for c in channels]
                waits += [self._confirm.get((b"psubscribe", p)) for p in patterns]
                for fut in waits:
                    if fut is not None:
                        await asyncio.shield(fut)
        except BaseException as exc:
            await sub.aclose()
            if isinstance(exc, TimeoutError) and not isinstance(exc, DBError):
                raise DBTimeoutError(
                    f"Redis did not confirm the subscription in {timeout}s"
                ) from exc
            raise
        return sub

    def _send(self, conn: RedisConnection, commands: list[tuple[bytes, str]]) -> None:
        loop = asyncio.get_running_loop()
        for verb, name in commands:
            key = (b"psubscribe" if verb == b"PSUBSCRIBE" else b"subscribe", name)
            if key not in self._confirm:
                fut = loop.create_future()
                fut.add_done_callback(_consume)
                self._confirm[key] = fut
        channels = [n for v, n in commands if v == b"SUBSCRIBE"]
        patterns = [n for v, n in commands if v == b"PSUBSCRIBE"]
        if channels:
            conn.send_only(pack_command((b"SUBSCRIBE", *channels)))
        if patterns:
            conn.send_only(pack_command((b"PSUBSCRIBE", *patterns)))

    def _remove(self, sub: RedisSubscription) -> None:
        gone_channels = _detach(self._channels, sub, sub.channels)
        gone_patterns = _detach(self._patterns, sub, sub.patterns)
        conn = self._conn
        if conn is None or conn.closed:
            return
        if gone_channels:
            conn.send_only(pack_command((b"UNSUBSCRIBE", *gone_channels)))
        if gone_patterns:
            conn.send_only(pack_command((b"PUNSUBSCRIBE", *gone_patterns)))

    # -- incoming ------------------------------------------------------------------------------

    def _on_push(self, reply: list[Any]) -> None:
        kind = reply[0]
        if kind == b"message":
            channel = _text(reply[1])
            message = Message(channel, reply[2])
            for sub in self._channels.get(channel, ()):
                sub._deliver(message)
        elif kind == b"pmessage":
            pattern = _text(reply[1])
            message = Message(_text(reply[2]), reply[3], pattern)
            for sub in self._patterns.get(pattern, ()):
                sub._deliver(message)
        elif kind in (b"subscribe", b"psubscribe"):
            fut = self._confirm.pop((kind, _text(reply[1])), None)
            if fut is not None and not fut.done():
                fut.set_result(None)

    # -- the connection ------------------------------------------------------------------------

    async def _connection(self) -> _PubSubConnection:
        conn = self._conn
        if conn is not None and not conn.closed:
            return conn
        task = self._connecting
        if task is None:
            task = asyncio.get_running_loop().create_task(self._connect(first=True))
            task.add_done_callback(_consume)
            self._connecting = task
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled() and not _being_cancelled():  # aclose() stopped the connect
                raise ClosedResourceError("the pub/sub client was closed") from None
            raise

    async def _connect(self, *, first: bool) -> _PubSubConnection:
        try:
            delay = 0.0
            while True:
                try:
                    return await self._open()
                except DBError:
                    if first:
                        raise
                delay = min(max(delay * 2, 0.05), self.config.reconnect_backoff_max)
                await asyncio.sleep(delay)
        finally:
            self._connecting = None

    async def _open(self) -> _PubSubConnection:
        conn = await open_connection(
            self.config,
            self._stats,
            self.config.connect_timeout,
            lambda loop, stats: _PubSubConnection(loop, stats, self),
        )
        assert isinstance(conn, _PubSubConnection)
        try:
            async with asyncio.timeout(self.config.connect_timeout):
                self.client_id = await conn.submit(pack_command((b"CLIENT", b"ID")))
        except BaseException as exc:
            conn.discard(DBConnectionError("pub/sub connection setup failed"))
            if isinstance(exc, TimeoutError):
                raise DBTimeoutError("Redis did not answer CLIENT ID in time") from exc
            raise
        if self._closed:
            conn.discard(DBConnectionError("the pub/sub client was closed"))
            raise ClosedResourceError("the pub/sub client is closed")
        self._conn = conn
        # After a reconnect: subscribe again to everything the subscriptions still need.
        again = [(b"SUBSCRIBE", c) for c in self._channels]
        again += [(b"PSUBSCRIBE", p) for p in self._patterns]
        if again:
            self._send(conn, again)
        return conn

    def _on_lost(self, conn: _PubSubConnection) -> None:
        if conn is not self._conn:
            return
        self._conn = None
        error = conn.error or DBConnectionError("pub/sub connection lost")
        confirm, self._confirm = self._confirm, {}
        for fut in confirm.values():
            if not fut.done():
                fut.set_exception(error)
        if self._closed or self._connecting is not None:
            return
        if self._channels or self._patterns:
            self.reconnects += 1
            task = asyncio.get_running_loop().create_task(self._connect(first=False))
            task.add_done_callback(_consume)
            self._connecting = task

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.closed

    async def aclose(self) -> None:
        """Close every subscription and the connection."""
        if self._closed:
            return
        self._closed = True
        subs = {s for group in self._channels.values() for s in group}
        subs |= {s for group in self._patterns.values() for s in group}
        self._channels.clear()
        self._patterns.clear()
        for sub in subs:
            sub._close()
        confirm, self._confirm = self._confirm, {}
        for fut in confirm.values():  # subscribers still waiting for a confirmation
            if not fut.done():
                fut.set_exception(ClosedResourceError("the pub/sub client was closed"))
        task = self._connecting
        if task is not None:
            task.cancel()
            await asyncio.wait([task])
            self._connecting = None  # also when it was cancelled before it ever ran
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.aclose()


def _detach(
    index: dict[str, set[RedisSubscription]], sub: RedisSubscription, names: tuple[str, ...]
) -> list[str]:
    gone = []
    for name in names:
        subs = index.get(name)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del index[name]
                gone.append(name)
    return gone


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _consume(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


class RedisBroker(PubSubBroker):
    """The core pub/sub interface over Redis: publish through the client's shared, pipelined
    connection, subscribe through one dedicated `PubSub` connection."""

    PLUGIN_NAME = "redis"

    def __init__(self, redis: str | Redis, *, backlog: int = DEFAULT_BACKLOG) -> None:
        from flowcoro.db.redis.client import Redis

        self._owns = isinstance(redis, str)
        self.client = Redis.from_url(redis) if isinstance(redis, str) else redis
        self.pubsub = PubSub(self.client.config, backlog=backlog)

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        url = settings.require("redis_url")
        return cls(url, backlog=int(settings.get("pubsub_backlog") or DEFAULT_BACKLOG))

    async def publish(self, channel: str, data: bytes) -> int:
        return int(await self.client.publish(channel, data))

    async def subscribe(self, *channels: str, patterns: tuple[str, ...] = ()) -> RedisSubscription:
        return await self.pubsub.subscribe(*channels, patterns=patterns)

    async def aclose(self) -> None:
        await self.pubsub.aclose()
        if self._owns:
            await self.client.aclose()
