"""`Redis`: the client. One shared, automatically pipelined connection for ordinary commands; a
small set of dedicated connections for blocking commands and WATCH transactions."""

from __future__ import annotations

import asyncio
import hashlib
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, ClassVar, Final, TypeVar

from flowcoro.core.abc import Component
from flowcoro.core.deadline import effective_timeout
from flowcoro.core.errors import ClosedResourceError
from flowcoro.db.errors import DBConnectionError, DBTimeoutError
from flowcoro.db.observers import InfoCache, QueryInfo, load_observers, observed
from flowcoro.db.redis._resp import pack_command
from flowcoro.db.redis.commands import Commands, Key, Transform, Value
from flowcoro.db.redis.config import RedisConfig
from flowcoro.db.redis.connection import (
    RedisConnection,
    RedisStatistics,
    Stats,
    expire,
    future_of,
    open_connection,
)
from flowcoro.db.redis.errors import NoScriptError, WatchError
from flowcoro.db.redis.pipeline import Pipeline, Watch
from flowcoro.db.redis.pubsub import DEFAULT_BACKLOG, PubSub

if TYPE_CHECKING:
    from types import TracebackType
    from typing import Self

    from flowcoro.core.app import App

__all__ = ["Redis", "Script"]

T = TypeVar("T")

# Commands that would change the shared connection's state under other tasks' feet.
_STATEFUL: Final = {
    b"SUBSCRIBE": "use PubSub / RedisBroker.subscribe",
    b"PSUBSCRIBE": "use PubSub / RedisBroker.subscribe",
    b"SSUBSCRIBE": "use PubSub / RedisBroker.subscribe",
    b"UNSUBSCRIBE": "close the subscription",
    b"PUNSUBSCRIBE": "close the subscription",
    b"MONITOR": "use a dedicated tool",
    b"WATCH": "use Redis.watch()",
    b"UNWATCH": "use Redis.watch()",
    b"MULTI": "use Redis.pipeline(transaction=True)",
    b"EXEC": "use Redis.pipeline(transaction=True)",
    b"DISCARD": "use Redis.pipeline(transaction=True)",
    b"SELECT": "put the database in the URL",
    b"AUTH": "put the credentials in the URL",
    b"HELLO": "the client speaks RESP2",
    b"QUIT": "use Redis.aclose()",
    b"RESET": "use Redis.aclose()",
}
_BLOCKING: Final = frozenset(
    {b"BLPOP", b"BRPOP", b"BLMOVE", b"BRPOPLPUSH", b"BLMPOP", b"BZPOPMIN", b"BZPOPMAX", b"BZMPOP"}
    | {b"WAIT", b"WAITAOF"}
)
_CLOSE_GRACE: Final = 5.0


def _name(arg: object) -> bytes:
    if isinstance(arg, str):
        return arg.upper().encode()
    if isinstance(arg, bytes):
        return arg.upper()
    raise TypeError(f"the command name must be str or bytes, got {arg!r}")


class Redis(Commands, Component):
    """Redis client. ``async with Redis.from_url(url) as r: await r.set("k", "v")``.

    Also a core `Component` (name ``"redis"``): ``app.add_component(r)`` connects it at start-up,
    closes it at shutdown and registers `health_check` (a PING) with the app's health registry.
    """

    _instances: ClassVar[weakref.WeakSet[Redis]] = weakref.WeakSet()

    def __init__(self, config: RedisConfig | None = None, *, name: str = "redis") -> None:
        Redis._instances.add(self)
        self.config = config or RedisConfig()
        self.name = name
        self._stats = Stats()
        self._conn: RedisConnection | None = None
        self._connecting: asyncio.Task[RedisConnection] | None = None
        self._backoff = 0.0
        self._ever_connected = False
        self._closed = False
        self._command_timeout = self.config.command_timeout
        self._max_pending = self.config.max_pending
        self._idle: list[RedisConnection] = []
        self._busy: set[RedisConnection] = set()
        self._dedicated_sem = asyncio.Semaphore(self.config.max_dedicated)
        # Asked once: with none registered a command pays one truth test (flowcoro.db.observers).
        self._observers = load_observers()
        self._infos = InfoCache(self._command_info, 256)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Redis:
        """Build a client from a URL (see `RedisConfig.from_url`); keywords override the URL."""
        name = options.pop("name", "redis")
        return cls(RedisConfig.from_url(url, **options), name=name)

    def __repr__(self) -> str:
        return f"<Redis {self.config.address}{' closed' if self._closed else ''}>"

    # -- the hot path --------------------------------------------------------------------------

    async def _execute(
        self, args: tuple[Any, ...], transform: Transform = None, observe: bool = True
    ) -> Any:
        if observe and self._observers:
            return await self._observed(self._execute(args, transform, False), args[0])
        # Only the caller's deadline needs a timer per command; command_timeout is enforced by
        # one stall watchdog per connection (see RedisConnection).
        limit = effective_timeout(None)
        conn = self._conn
        if conn is None or conn.closed:
            conn = await self._shared(limit)
        if len(conn.waiters) >= self._max_pending:
            conn = await self._wait_room(conn, limit)
        self._stats.commands += 1
        fut = conn.submit(pack_command(args))
        if limit is None:
            reply = await fut
        else:
            handle = conn._loop.call_later(limit, self._expire, fut, limit, args[0])
            try:
                reply = await fut
            finally:
                handle.cancel()
        return reply if transform is None else transform(reply)

    def _observed(self, work: Coroutine[Any, Any, T], command: Any) -> Coroutine[Any, Any, T]:
        return observed(self._observers, self._infos.get(command), work)

    def _command_info(self, command: Any) -> QueryInfo:
        config = self.config
        unix = config.unix_path
        return QueryInfo(
            "redis",
            _name(command).decode(),
            None,
            str(config.db),
            unix if unix is not None else config.host,
            None if unix is not None else config.port,
            self.name,
        )

    def _expire(self, fut: asyncio.Future[Any], timeout: float, command: object) -> None:
        """The caller's deadline passed: fail this command only; its reply is dropped later."""
        if not fut.done():
            self._stats.timeouts += 1
            expire(fut, timeout, command)

    async def _wait_room(self, conn: RedisConnection, timeout: float | None) -> RedisConnection:
        """Back-pressure: wait (bounded) until the shared connection has room for one more."""
        try:
            async with asyncio.timeout(timeout):
                while len(conn.waiters) >= self._max_pending and not conn.closed:
                    await asyncio.wait([future_of(conn.waiters[len(conn.waiters) // 2])])
        except TimeoutError:
            raise DBTimeoutError(
                f"{self._max_pending} commands already pending on the Redis connection "
                "(max_pending); none finished in time"
            ) from None
        if conn.closed:
            return await self._shared(timeout)
        return conn

    async def execute(self, *args: Any) -> Any:
        """Run any command, e.g. ``await r.execute("OBJECT", "ENCODING", key)``.

        Blocking commands run on a dedicated connection; commands that would change the shared
        connection's state (SUBSCRIBE, MULTI, WATCH, SELECT ...) are refused with the API to use.
        """
        if not args:
            raise ValueError("execute needs a command name")
        name = _name(args[0])
        if name in _STATEFUL:
            raise ValueError(
                f"{name.decode()} cannot run on the shared connection: {_STATEFUL[name]}"
            )
        if name in _BLOCKING or (
            name in (b"XREAD", b"XREADGROUP") and any(_is_block(a) for a in args[1:])
        ):
            return await self._execute_blocking(args, 0)
        return await self._execute(args)

    # -- connections ---------------------------------------------------------------------------

    async def _shared(self, timeout: float | None) -> RedisConnection:
        if self._closed:
            raise ClosedResourceError("the Redis client is closed")
        task = self._connecting
        if task is None:
            task = asyncio.get_running_loop().create_task(self._connect_shared())
            task.add_done_callback(_consume)
            self._connecting = task
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.cancelled() and not _being_cancelled():  # aclose() stopped the connect
                raise ClosedResourceError("the Redis client was closed") from None
            raise
        except TimeoutError:
            if task.done() and task.exception() is not None:
                raise
            raise DBTimeoutError(
                f"no connection to Redis at {self.config.address} within {timeout:.3g}s"
            ) from None

    async def _connect_shared(self) -> RedisConnection:
        try:
            if self._backoff:
                await asyncio.sleep(self._backoff)
            conn = await open_connection(self.config, self._stats, self.config.connect_timeout)
        except BaseException:
            self._backoff = min(max(self._backoff * 2, 0.05), self.config.reconnect_backoff_max)
            raise
        finally:
            self._connecting = None
        if self._closed:
            conn.discard(DBConnectionError("the Redis client was closed"))
            raise ClosedResourceError("the Redis client is closed")
        conn.stall_timeout = self._command_timeout
        self._backoff = 0.0
        if self._ever_connected:
            self._stats.reconnects += 1
        self._ever_connected = True
        self._conn = conn
        return conn

    async def _acquire_dedicated(self, timeout: float | None) -> RedisConnection:
        if self._closed:
            raise ClosedResourceError("the Redis client is closed")
        try:
            async with asyncio.timeout(timeout):
                await self._dedicated_sem.acquire()
        except TimeoutError:
            raise DBTimeoutError(
                f"all {self.config.max_dedicated} dedicated Redis connections (max_dedicated) "
                "stayed busy"
            ) from None
        try:
            conn = None
            while self._idle and conn is None:
                conn = self._idle.pop()
                if conn.closed:
                    conn = None
            if conn is None:
                connect_timeout = self.config.connect_timeout
                if timeout is not None and (connect_timeout is None or timeout < connect_timeout):
                    connect_timeout = timeout
                conn = await open_connection(self.config, self._stats, connect_timeout)
            self._busy.add(conn)
            return conn
        except BaseException:
            self._dedicated_sem.release()
            raise

    def _release_dedicated(self, conn: RedisConnection) -> None:
        """Keep a dedicated connection only when it is provably in sync (no reply outstanding)."""
        self._dedicated_sem.release()
        self._busy.discard(conn)
        if conn.closed:
            return
        if conn.waiters or self._closed or len(self._idle) >= self.config.max_dedicated:
            conn.discard(DBConnectionError("dedicated connection discarded"))
        else:
            self._idle.append(conn)

    @asynccontextmanager
    async def dedicated(self) -> AsyncIterator[RedisConnection]:
        """Borrow a dedicated connection for connection-scoped state (use `run_on`); it counts
        against ``max_dedicated`` and is closed afterwards, since its state is unknown."""
        conn = await self._acquire_dedicated(effective_timeout(self._command_timeout))
        try:
            yield conn
        finally:
            conn.discard(DBConnectionError("dedicated connection returned"))
            self._release_dedicated(conn)

    async def run_on(
        self,
        conn: RedisConnection,
        args: tuple[Any, ...],
        timeout: float | None,
        transform: Transform = None,
        observe: bool = True,
    ) -> Any:
        """Send one command on ``conn`` (a dedicated connection) and wait for its reply."""
        if observe and self._observers:
            return await self._observed(self.run_on(conn, args, timeout, transform, False), args[0])
        self._stats.commands += 1
        fut = conn.submit(pack_command(args))
        try:
            async with asyncio.timeout(timeout):
                reply = await fut
        except TimeoutError:
            if not fut.done() or fut.cancelled():
                self._stats.timeouts += 1
                raise DBTimeoutError(
                    f"Redis command {_name(args[0]).decode()} timed out after {timeout:.3g}s"
                ) from None
            raise
        return reply if transform is None else transform(reply)

    async def _execute_blocking(
        self, args: tuple[Any, ...], server_timeout: float, transform: Transform = None
    ) -> Any:
        limit = None
        if server_timeout and self._command_timeout is not None:
            limit = server_timeout + self._command_timeout
        timeout = effective_timeout(limit)
        conn = await self._acquire_dedicated(timeout)
        try:
            return await self.run_on(conn, args, timeout, transform)
        finally:
            self._release_dedicated(conn)  # kept for reuse only when provably in step

    # -- pipelines and transactions ------------------------------------------------------------

    def pipeline(self, *, transaction: bool = False) -> Pipeline:
        """Queue commands and send them at once: ``p = r.pipeline(); p.set(..); p.get(..);
        results = await p.execute()``. ``transaction=True`` wraps them in MULTI/EXEC."""
        return Pipeline(self, transaction=transaction)

    def watch(self, *keys: Key) -> Watch:
        """``async with r.watch(k) as w:`` WATCH on a dedicated connection; read with ``await
        w.get(k)``, then ``p = w.multi()`` ... ``await p.execute()`` (`WatchError` on conflict)."""
        if not keys:
            raise ValueError("watch needs at least one key")
        return Watch(self, keys)

    async def transaction(
        self, fn: Callable[[Watch], Awaitable[T]], *keys: Key, retries: int = 10
    ) -> T:
        """Run ``fn(w)`` inside ``watch(*keys)``, retrying on `WatchError` up to ``retries``."""
        for _ in range(retries):
            try:
                async with self.watch(*keys) as w:
                    return await fn(w)
            except WatchError:
                continue
        raise WatchError(f"transaction on {keys!r} conflicted {retries} times in a row")

    def pubsub(self, *, backlog: int = DEFAULT_BACKLOG) -> PubSub:
        """A `PubSub` on its own connection, with this client's configuration."""
        return PubSub(self.config, backlog=backlog)

    def register_script(self, source: str) -> Script:
        return Script(self, source)

    # -- iterators -----------------------------------------------------------------------------

    async def _scan(
        self,
        head: tuple[Any, ...],
        match: str | None,
        count: int | None,
        extra: tuple[Any, ...] = (),
    ) -> AsyncIterator[list[bytes]]:
        cursor: bytes | int = 0
        opts: tuple[Any, ...] = ()
        if match is not None:
            opts += (b"MATCH", match)
        if count is not None:
            opts += (b"COUNT", count)
        while True:
            cursor, items = await self._execute((*head, cursor, *opts, *extra))
            yield items
            if cursor in (b"0", 0):
                return

    async def scan_iter(
        self,
        match: str | None = None,
        *,
        count: int | None = None,
        type: str | None = None,
    ) -> AsyncIterator[bytes]:
        """Iterate keys with SCAN (may yield a key twice, as SCAN does)."""
        extra = () if type is None else (b"TYPE", type)
        async for items in self._scan((b"SCAN",), match, count, extra):
            for key in items:
                yield key

    async def hscan_iter(
        self, key: Key, match: str | None = None, *, count: int | None = None
    ) -> AsyncIterator[tuple[bytes, bytes]]:
        async for items in self._scan((b"HSCAN", key), match, count):
            it = iter(items)
            for pair in zip(it, it, strict=True):
                yield pair

    async def sscan_iter(
        self, key: Key, match: str | None = None, *, count: int | None = None
    ) -> AsyncIterator[bytes]:
        async for items in self._scan((b"SSCAN", key), match, count):
            for member in items:
                yield member

    async def zscan_iter(
        self, key: Key, match: str | None = None, *, count: int | None = None
    ) -> AsyncIterator[tuple[bytes, float]]:
        async for items in self._scan((b"ZSCAN", key), match, count):
            it = iter(items)
            for member, score in zip(it, it, strict=True):
                yield member, float(score)

    # -- lifecycle, health, statistics ---------------------------------------------------------

    @classmethod
    def instances(cls) -> list[Redis]:
        """The live, unclosed clients of this process (weakly held; for metrics exporters)."""
        return [r for r in cls._instances if not r._closed]

    def statistics(self) -> RedisStatistics:
        return self._stats.snapshot()

    async def health_check(self) -> None:
        """PING with a 2 s bound (the app's registry applies its own timeout too)."""
        timeout = effective_timeout(2.0)
        async with asyncio.timeout(timeout):
            reply = await self.ping()
        if reply != b"PONG":
            raise DBConnectionError(f"unexpected PING reply from Redis: {reply!r}")

    async def connect(self) -> None:
        """Open the shared connection now (otherwise the first command does)."""
        conn = self._conn
        if conn is None or conn.closed:
            await self._shared(effective_timeout(self.config.connect_timeout))

    async def start(self, app: App) -> None:
        await self.connect()

    async def stop(self) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close: commands already sent get up to 5 s for their replies; later ones fail."""
        if self._closed:
            return
        self._closed = True
        task = self._connecting
        if task is not None:
            task.cancel()
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            if conn.waiters:
                await asyncio.wait([future_of(conn.waiters[-1])], timeout=_CLOSE_GRACE)
            await conn.aclose()
        idle, self._idle = self._idle, []
        for c in idle:
            await c.aclose()
        for c in list(self._busy):  # blocked commands fail now rather than outlive the client
            c.discard(DBConnectionError("the Redis client was closed"))

    @property
    def closed(self) -> bool:
        return self._closed

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class Script:
    """A Lua script run by SHA (EVALSHA), loaded with EVAL when the server lacks it."""

    __slots__ = ("_client", "sha", "source")

    def __init__(self, client: Redis, source: str) -> None:
        self._client = client
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    async def __call__(self, keys: Iterable[Key] = (), args: Iterable[Value] = ()) -> Any:
        keys, args = tuple(keys), tuple(args)
        try:
            return await self._client.evalsha(self.sha, keys, args)
        except NoScriptError:
            return await self._client.eval(self.source, keys, args)


def _is_block(arg: object) -> bool:
    return isinstance(arg, str | bytes) and _name(arg) == b"BLOCK"


def _being_cancelled() -> bool:
    """True when the current task itself is being cancelled (not just something it awaited)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _consume(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()
