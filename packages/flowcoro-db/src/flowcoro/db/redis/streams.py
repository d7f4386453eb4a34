"""Redis Streams consumer groups as a typed helper (the stream package builds on it).

A consumer reads new entries with `ConsumerGroup.read` (XREADGROUP ``>``), acknowledges them with
`ack` (XACK); entries read but never acknowledged stay pending for their consumer. When a consumer
dies, another one takes its entries over with `autoclaim` (XAUTOCLAIM, entries idle for at least
``min_idle`` seconds) and inspects them with `pending` (XPENDING).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from flowcoro.db.redis._transforms import to_pairs_dict, to_str
from flowcoro.db.redis.errors import RedisCommandError

if TYPE_CHECKING:
    from flowcoro.db.redis.client import Redis
    from flowcoro.db.redis.commands import Key, Value

__all__ = ["StreamEntry", "PendingEntry", "AutoClaimResult", "ConsumerGroup", "parse_entries"]


class StreamEntry(NamedTuple):
    id: str
    fields: dict[bytes, bytes]  # empty for an entry deleted while pending


class PendingEntry(NamedTuple):
    id: str
    consumer: str
    idle: float  # seconds since it was last delivered
    deliveries: int


class AutoClaimResult(NamedTuple):
    next_id: str  # "0-0" once the whole pending list was scanned
    entries: list[StreamEntry]
    deleted: list[str]  # pending ids whose entries no longer exist (removed from the PEL)


def parse_entries(reply: Any) -> list[StreamEntry]:
    return [
        StreamEntry(to_str(eid), {} if fields is None else to_pairs_dict(fields))
        for eid, fields in reply or ()
    ]


class ConsumerGroup:
    """One consumer (``consumer``) of a group (``group``) on a stream."""

    __slots__ = ("consumer", "group", "redis", "stream")

    def __init__(self, redis: Redis, stream: str, group: str, consumer: str) -> None:
        for field, value in (("stream", stream), ("group", group), ("consumer", consumer)):
            if not isinstance(value, str) or not value:
                raise ValueError(f"ConsumerGroup: {field!r} must be a non-empty str, got {value!r}")
        self.redis = redis
        self.stream = stream
        self.group = group
        self.consumer = consumer

    async def create(self, start_id: str = "$", *, mkstream: bool = True) -> bool:
        """Create the group (and the stream with ``mkstream``); False when it already exists."""
        args: tuple[Any, ...] = (b"XGROUP", b"CREATE", self.stream, self.group, start_id)
        if mkstream:
            args += (b"MKSTREAM",)
        try:
            await self.redis._execute(args)
        except RedisCommandError as exc:
            if exc.code == "BUSYGROUP":
                return False
            raise
        return True

    async def destroy(self) -> bool:
        return bool(await self.redis._execute((b"XGROUP", b"DESTROY", self.stream, self.group)))

    async def delete_consumer(self, consumer: str | None = None) -> int:
        """Remove a consumer (this one by default); returns how many entries it had pending."""
        name = consumer or self.consumer
        return int(
            await self.redis._execute((b"XGROUP", b"DELCONSUMER", self.stream, self.group, name))
        )

    async def add(
        self, fields: Mapping[Key, Value], *, maxlen: int | None = None, approximate: bool = True
    ) -> str:
        """XADD to the group's stream; returns the new entry id."""
        return await self.redis.xadd(self.stream, fields, maxlen=maxlen, approximate=approximate)

    async def read(
        self, count: int = 10, *, block: float | None = None, pending: bool = False
    ) -> list[StreamEntry]:
        """New entries for this consumer (or, with ``pending=True``, its own unacknowledged
        ones). ``block`` waits up to that many seconds for new entries, on a dedicated
        connection."""
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count!r}")
        args: tuple[Any, ...] = (
            b"XREADGROUP",
            b"GROUP",
            self.group,
            self.consumer,
            b"COUNT",
            count,
        )
        if block is not None:
            args += (b"BLOCK", max(1, round(block * 1000)))
        args += (b"STREAMS", self.stream, b"0" if pending else b">")
        if block is None:
            reply = await self.redis._execute(args)
        else:
            reply = await self.redis._execute_blocking(args, block)
        if not reply:
            return []
        return parse_entries(reply[0][1])

    async def ack(self, *ids: str) -> int:
        if not ids:
            return 0
        return int(await self.redis._execute((b"XACK", self.stream, self.group, *ids)))

    async def pending(
        self,
        count: int = 100,
        *,
        consumer: str | None = None,
        min_idle: float | None = None,
        start: str = "-",
        end: str = "+",
    ) -> list[PendingEntry]:
        args: tuple[Any, ...] = (b"XPENDING", self.stream, self.group)
        if min_idle is not None:
            args += (b"IDLE", round(min_idle * 1000))
        args += (start, end, count)
        if consumer is not None:
            args += (consumer,)
        reply = await self.redis._execute(args)
        return [
            PendingEntry(to_str(eid), to_str(owner), idle / 1000.0, int(n))
            for eid, owner, idle, n in reply
        ]

    async def autoclaim(
        self, min_idle: float, *, start: str = "0-0", count: int = 100
    ) -> AutoClaimResult:
        """Take over entries pending (for any consumer) for at least ``min_idle`` seconds."""
        reply = await self.redis._execute(
            (
                b"XAUTOCLAIM",
                self.stream,
                self.group,
                self.consumer,
                round(min_idle * 1000),
                start,
                b"COUNT",
                count,
            )
        )
        deleted = [to_str(i) for i in reply[2]] if len(reply) > 2 else []
        return AutoClaimResult(to_str(reply[0]), parse_entries(reply[1]), deleted)
