"""One Redis connection as an `asyncio.Protocol`, with automatic pipelining.

`RedisConnection.submit` appends the encoded command to a write buffer and a future to a FIFO of
waiters; the first submit of a loop iteration schedules one flush with ``call_soon``, so every
command issued by every task during that iteration goes out in a single write. Redis answers in
order, so each parsed reply is matched to the oldest waiter.

Invariants that keep replies with their commands:

- a waiter is removed from the FIFO only by the reply that answers it, or when the connection is
  discarded (then every pending waiter fails with `DBConnectionError`);
- a cancelled or timed-out waiter stays in the FIFO; its reply is consumed and discarded;
- a reply with no waiter, or bytes that are not RESP2, discard the connection.
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from flowcoro.db.errors import (
    AuthenticationError,
    DBConnectionError,
    DBError,
    DBTimeoutError,
)
from flowcoro.db.redis._resp import ProtocolError, ReplyError, make_reader, pack_command
from flowcoro.db.redis.errors import NoScriptError, RedisCommandError, RedisProtocolError

if TYPE_CHECKING:
    from flowcoro.db.redis.config import RedisConfig

__all__ = [
    "Batch",
    "future_of",
    "RedisConnection",
    "Stats",
    "RedisStatistics",
    "open_connection",
    "reply_error",
]


class RedisStatistics(NamedTuple):
    commands: int
    errors: int
    timeouts: int
    discarded_replies: int
    batches: int
    batch_size_mean: float
    batch_size_max: int
    connections_opened: int
    connections_open: int
    reconnects: int


class Stats:
    """Counters shared by a client's connections (plain integers: one loop, no locks)."""

    __slots__ = (
        "batch_max",
        "batched",
        "batches",
        "commands",
        "discarded",
        "errors",
        "open",
        "opened",
        "reconnects",
        "timeouts",
    )

    def __init__(self) -> None:
        self.commands = self.errors = self.timeouts = self.discarded = 0
        self.batches = self.batched = self.batch_max = 0
        self.opened = self.open = self.reconnects = 0

    def snapshot(self) -> RedisStatistics:
        mean = self.batched / self.batches if self.batches else 0.0
        return RedisStatistics(
            self.commands,
            self.errors,
            self.timeouts,
            self.discarded,
            self.batches,
            mean,
            self.batch_max,
            self.opened,
            self.open,
            self.reconnects,
        )


def reply_error(reply: ReplyError, command: object = "") -> DBError:
    """Translate an error reply into the DB error hierarchy."""
    message = str(reply)
    name = command.decode() if isinstance(command, bytes) else str(command)
    code = message.split(" ", 1)[0]
    if code == "WRONGPASS":
        return AuthenticationError(f"Redis refused the credentials: {message}")
    if code == "NOAUTH":
        return AuthenticationError(f"Redis requires authentication: {message}")
    if code == "NOSCRIPT":
        return NoScriptError(message, name)
    return RedisCommandError(message, name)


class Batch:
    """One FIFO entry standing for ``count`` consecutive replies (an explicit pipeline): its
    future gets the list of raw replies, error replies as `ReplyError` values in place. Replies
    are collected even after the future was cancelled, so the connection stays in step."""

    __slots__ = ("count", "fut", "replies")

    def __init__(self, fut: asyncio.Future[list[Any]], count: int) -> None:
        self.fut = fut
        self.count = count
        self.replies: list[Any] = []


def future_of(entry: asyncio.Future[Any] | Batch) -> asyncio.Future[Any]:
    """The future a FIFO entry completes (for waiting on it without touching it)."""
    return entry.fut if isinstance(entry, Batch) else entry


class RedisConnection(asyncio.Protocol):
    __slots__ = (
        "_batch",
        "_closed_waiter",
        "_flush_scheduled",
        "_loop",
        "_progress",
        "_reader",
        "_seen",
        "_stats",
        "_transport",
        "_watchdog",
        "_wbuf",
        "closed",
        "error",
        "stall_timeout",
        "waiters",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, stats: Stats) -> None:
        self._loop = loop
        self._stats = stats
        self._reader = make_reader()
        self._transport: asyncio.Transport | None = None
        self._wbuf: list[bytes] = []
        self._batch = 0
        self._flush_scheduled = False
        self._closed_waiter: asyncio.Future[None] = loop.create_future()
        self.waiters: deque[asyncio.Future[Any] | Batch] = deque()
        self.closed = False
        self.error: DBError | None = None
        # The stall watchdog (shared connections only): one timer per connection, not one per
        # command. If no byte arrives for stall_timeout while commands wait, the connection is
        # discarded and they fail with DBTimeoutError.
        self.stall_timeout: float | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._progress = 0
        self._seen = 0

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance check here.
        self._transport = cast("asyncio.Transport", transport)
        self._stats.opened += 1
        self._stats.open += 1
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self._progress += 1
        reader = self._reader
        reader.feed(data)
        waiters = self.waiters
        try:
            while True:
                reply = reader.gets()
                if reply is False:
                    return
                if not waiters:
                    self.discard(
                        RedisProtocolError("Redis sent a reply no command was waiting for")
                    )
                    return
                fut = waiters[0]
                if fut.__class__ is Batch:
                    # Drain as many of the batch's replies as arrived, without revisiting the FIFO.
                    batch = fut
                    replies = batch.replies
                    replies.append(reply)
                    count = batch.count
                    while len(replies) < count:
                        reply = reader.gets()
                        if reply is False:
                            return
                        replies.append(reply)
                    waiters.popleft()
                    if batch.fut.done():
                        self._stats.discarded += count
                    else:
                        batch.fut.set_result(replies)
                    continue
                waiters.popleft()
                fut = cast("asyncio.Future[Any]", fut)
                if fut.done():  # cancelled or timed out: its reply is consumed here, and dropped
                    self._stats.discarded += 1
                elif reply.__class__ is ReplyError:
                    self._stats.errors += 1
                    fut.set_exception(reply_error(reply))
                else:
                    fut.set_result(reply)
        except ProtocolError as exc:
            # An incomplete batch is still at the head of the FIFO: discard fails it too.
            self.discard(RedisProtocolError(f"invalid reply from Redis: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._stats.open -= 1
            self._transport = None
        detail = f": {exc}" if exc else ""
        self._fail(DBConnectionError(f"connection to Redis lost{detail}"))
        if not self._closed_waiter.done():
            self._closed_waiter.set_result(None)

    # -- sending -------------------------------------------------------------------------------

    def submit(self, packed: bytes) -> asyncio.Future[Any]:
        """Queue one encoded command; the future gets its reply (or its error)."""
        # The per-command hot path: `_enqueue` written out here, saving a call per command.
        if self.closed:
            raise self.error or DBConnectionError("connection to Redis is closed")
        fut = self._loop.create_future()
        self.waiters.append(fut)
        self._wbuf.append(packed)
        self._batch += 1
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)
            if self._watchdog is None and self.stall_timeout is not None:
                self._arm()
        return fut

    def send_only(self, packed: bytes) -> None:
        """Write a command whose replies arrive as push messages (pub/sub), with no waiter."""
        if self.closed:
            raise self.error or DBConnectionError("connection to Redis is closed")
        self._wbuf.append(packed)
        self._batch += 1
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def submit_many(self, packed: bytes, count: int) -> list[asyncio.Future[Any]]:
        """Queue ``count`` commands encoded back to back in ``packed``: they go out contiguously,
        so nothing from another task lands between them (MULTI ... EXEC relies on this)."""
        if self.closed:
            raise self.error or DBConnectionError("connection to Redis is closed")
        create = self._loop.create_future
        futs = [create() for _ in range(count)]
        self.waiters.extend(futs)
        self._enqueue(packed, count)
        return futs

    def submit_batch(self, packed: bytes, count: int) -> asyncio.Future[list[Any]]:
        """Queue ``count`` commands encoded back to back in ``packed`` (written contiguously:
        nothing from another task lands between them, which MULTI ... EXEC relies on); the
        future gets all their raw replies at once."""
        if self.closed:
            raise self.error or DBConnectionError("connection to Redis is closed")
        fut: asyncio.Future[list[Any]] = self._loop.create_future()
        self.waiters.append(Batch(fut, count))
        self._enqueue(packed, count)
        return fut

    def _enqueue(self, packed: bytes, count: int) -> None:
        """Buffer ``count`` encoded commands whose waiters are queued; one flush per loop pass,
        and the stall watchdog armed while replies are owed."""
        self._wbuf.append(packed)
        self._batch += count
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)
            if self._watchdog is None and self.stall_timeout is not None:
                self._arm()

    def _arm(self) -> None:
        assert self.stall_timeout is not None
        self._seen = self._progress
        self._watchdog = self._loop.call_later(self.stall_timeout, self._check_stall)

    def _check_stall(self) -> None:
        self._watchdog = None
        if self.closed or not self.waiters:
            return
        if self._progress != self._seen:
            self._arm()
            return
        self._stats.timeouts += 1
        self.discard(
            DBTimeoutError(
                f"no reply from Redis for {self.stall_timeout:.3g}s (command_timeout); "
                "connection discarded"
            )
        )

    def _flush(self) -> None:
        self._flush_scheduled = False
        buf = self._wbuf
        if not buf or self._transport is None:
            return
        self._wbuf = []
        stats = self._stats
        size = self._batch
        self._batch = 0
        stats.batches += 1
        stats.batched += size
        if size > stats.batch_max:
            stats.batch_max = size
        self._transport.write(buf[0] if len(buf) == 1 else b"".join(buf))

    # -- closing -------------------------------------------------------------------------------

    def _fail(self, error: DBError) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if not self.closed:
            self.closed = True
            self.error = error
        self._wbuf = []
        waiters = self.waiters
        while waiters:
            fut = future_of(waiters.popleft())
            if not fut.done():
                fut.set_exception(error)
                self._stats.errors += 1

    def discard(self, error: DBError) -> None:
        """Fail every pending command with ``error`` and abort the connection."""
        self._fail(error)
        if self._transport is not None:
            self._transport.abort()

    async def aclose(self) -> None:
        """Close gracefully: written commands are failed only if their replies do not arrive."""
        if self._transport is not None and not self.closed:
            self._flush()
            self.closed = True
            self.error = DBConnectionError("connection closed by the client")
            self._transport.close()
        elif self._transport is not None:
            self._transport.abort()
        await self._closed_waiter


def expire(fut: asyncio.Future[Any], timeout: float, command: object) -> None:
    """Timer callback: fail a command that got no reply in time (its reply is dropped later)."""
    if not fut.done():
        name = command.decode() if isinstance(command, bytes) else str(command)
        fut.set_exception(DBTimeoutError(f"Redis command {name} timed out after {timeout:.3g}s"))


async def open_connection(
    config: RedisConfig,
    stats: Stats,
    timeout: float | None,
    factory: Callable[[asyncio.AbstractEventLoop, Stats], RedisConnection] = RedisConnection,
) -> RedisConnection:
    """Connect, then authenticate, select the database and name the client (one round trip)."""
    loop = asyncio.get_running_loop()
    conn: RedisConnection | None = None
    try:
        async with asyncio.timeout(timeout):
            if config.unix_path is not None:
                _, conn = await loop.create_unix_connection(
                    lambda: factory(loop, stats), config.unix_path
                )
            else:
                ctx = config.make_ssl_context()
                _, conn = await loop.create_connection(
                    lambda: factory(loop, stats),
                    config.host,
                    config.port,
                    ssl=ctx,
                    server_hostname=config.host if ctx is not None else None,
                )
            setup: list[tuple[object, ...]] = []
            if config.password is not None:
                if config.username:
                    setup.append((b"AUTH", config.username, config.password))
                else:
                    setup.append((b"AUTH", config.password))
            if config.db:
                setup.append((b"SELECT", config.db))
            if config.client_name:
                setup.append((b"CLIENT", b"SETNAME", config.client_name))
            if setup:
                futs = conn.submit_many(b"".join(pack_command(c) for c in setup), len(setup))
                for command, fut in zip(setup, futs, strict=True):
                    try:
                        await fut
                    except AuthenticationError:
                        raise
                    except RedisCommandError as exc:
                        if command[0] == b"AUTH":
                            raise AuthenticationError(
                                f"Redis at {config.address} refused the credentials: {exc.reply}"
                            ) from exc
                        raise DBConnectionError(
                            f"connection setup failed at {config.address}: {exc}"
                        ) from exc
            return conn
    except BaseException as exc:
        if conn is not None:
            conn.discard(DBConnectionError("connection setup did not complete"))
        if isinstance(exc, DBError):
            raise
        if isinstance(exc, TimeoutError):
            raise DBTimeoutError(
                f"connecting to Redis at {config.address} timed out after {timeout}s"
            ) from exc
        if isinstance(exc, OSError):
            raise DBConnectionError(f"cannot connect to Redis at {config.address}: {exc}") from exc
        raise
