"""`Database`: one async API over PostgreSQL, MySQL/MariaDB and SQLite, with a pool, deadlines,
retries for idempotent statements, transactions and statistics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from flowcoro.core.abc import Component
from flowcoro.core.deadline import effective_timeout, remaining
from flowcoro.core.errors import DeadlineExceeded, PoolTimeout
from flowcoro.core.pool import Pool, PoolStatistics
from flowcoro.db._registry import driver_for
from flowcoro.db._sql import bind, translate
from flowcoro.db.errors import (
    AuthenticationError,
    DBConnectionError,
    DBError,
    DBPoolTimeout,
    DBTimeoutError,
    TransactionError,
)
from flowcoro.db.observers import (
    InfoCache,
    QueryInfo,
    load_observers,
    observed,
    operation_of,
)
from flowcoro.db.session import Connection, Transaction, check_isolation, run_with_backoff
from flowcoro.db.url import parse_url

if TYPE_CHECKING:
    from types import TracebackType
    from typing import Self

    from flowcoro.core.app import App
    from flowcoro.db.abc import Driver, DriverConnection
    from flowcoro.db.rows import Row

__all__ = ["Database", "DatabaseStatistics"]

T = TypeVar("T")
_monotonic = time.monotonic
_DEADLINE_MARGIN = 0.005  # seconds our statement timer fires before the caller's deadline


class DatabaseStatistics(NamedTuple):
    """What `Database.statistics` reports: the pool's snapshot plus statement counters."""

    pool: PoolStatistics
    statements: int  # statements finished (successfully or with a database error)
    errors: int  # database errors raised to callers
    connection_errors: int  # connections lost or refused
    timeouts: int  # statement and pool-wait timeouts (including deadlines)
    cancelled: int  # statements cancelled mid-flight (their connection was closed)
    retries: int  # idempotent statements retried on a fresh connection


class Database(Component):
    """A database reached through the driver registered for the URL's scheme.

    ``Database("postgresql://user@host/db")``, ``Database("mysql://root@127.0.0.1/test")``
    (``mariadb://`` too), ``Database("sqlite:///app.db")``. Statements use ``?`` (positional)
    or ``:name`` (named, with one mapping argument) whatever the database.

    Options (defaults): ``min_size`` (1) and ``max_size`` (10; SQLite 4, ``:memory:`` 1)
    connections, ``acquire_timeout`` (30 s) to wait for one, ``command_timeout`` (None) per
    statement, ``max_lifetime`` (3600 s) and ``max_queries`` (50 000) per connection,
    ``health_check_after`` (1 s idle before a cheap ping on acquire), ``connect_timeout`` (10 s),
    ``reconnect_window`` (2 s of reconnect attempts with backoff before an acquisition fails),
    ``retries`` (2, only for calls marked ``idempotent=True``), ``statement_cache_size`` (256 per
    connection), ``pgbouncer`` (False; True uses no named prepared statements). Other keyword
    arguments go to the driver. A core deadline bounds the pool wait and the statement together.
    """

    def __init__(
        self,
        url: str,
        *,
        name: str = "db",
        min_size: int = 1,
        max_size: int | None = None,
        acquire_timeout: float = 30.0,
        command_timeout: float | None = None,
        max_lifetime: float | None = 3600.0,
        max_queries: int = 50_000,
        health_check_after: float = 1.0,
        connect_timeout: float = 10.0,
        reconnect_window: float = 2.0,
        retries: int = 2,
        statement_cache_size: int = 256,
        pgbouncer: bool = False,
        **driver_options: Any,
    ) -> None:
        self.url = parse_url(url)
        driver_cls = driver_for(self.url.scheme)
        for field, value in (("max_queries", max_queries), ("retries", retries + 1)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"Database: {field!r} must be a positive int, got {value!r}")
        for field, number in (
            ("acquire_timeout", acquire_timeout),
            ("connect_timeout", connect_timeout),
        ):
            if not number > 0:
                raise ValueError(f"Database: {field!r} must be > 0, got {number!r}")
        if command_timeout is not None and not command_timeout > 0:
            raise ValueError(f"Database: 'command_timeout' must be > 0, got {command_timeout!r}")
        options = dict(driver_options)
        options.update(
            statement_cache_size=statement_cache_size,
            pgbouncer=pgbouncer,
            connect_timeout=connect_timeout,
        )
        self.driver: Driver = driver_cls(self.url, options)
        self.name = name
        self._dialect = driver_cls.DIALECT
        self._command_timeout = command_timeout
        self._acquire_timeout = acquire_timeout
        self._max_queries = max_queries
        self._ping_after = health_check_after
        self._connect_timeout = connect_timeout
        self._reconnect_window = reconnect_window
        self._retries = retries
        if max_size is None:
            max_size = self.driver.default_max_size()
        self._pool: Pool[DriverConnection] = Pool(
            self._open,
            name=f"db:{name}",
            min_size=min(min_size, max_size),
            max_size=max_size,
            acquire_timeout=acquire_timeout,
            max_lifetime=max_lifetime,
            close=self._close_raw,
        )
        self._background: set[asyncio.Task[None]] = set()
        # Asked once: with none registered a statement pays one truth test (flowcoro.db.observers).
        self._observers = load_observers()
        self._infos = InfoCache(self._query_info)
        self._statements = self._errors = self._conn_errors = 0
        self._timeouts = self._cancelled = self._retried = 0

    # ------------------------------------------------------------------ lifecycle

    def __repr__(self) -> str:
        return f"<Database {self.name!r} {self.url.redacted()}>"

    async def connect(self) -> None:
        """Open ``min_size`` connections now (raises if the database cannot be reached)."""
        try:
            await self._pool.open()
        except PoolTimeout as exc:
            raise DBPoolTimeout(str(exc)) from exc

    async def aclose(self) -> None:
        """Close every connection; statements still running fail."""
        await self._pool.aclose()
        if self._background:
            await asyncio.wait(set(self._background), timeout=5.0)
        await self.driver.aclose()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def start(self, app: App) -> None:
        await self.connect()

    async def stop(self) -> None:
        await self.aclose()

    async def health_check(self) -> None:
        """A cheap round trip through the pool; raises when the database is not usable."""
        await self.fetchval("SELECT 1", timeout=2.0)

    def statistics(self) -> DatabaseStatistics:
        return DatabaseStatistics(
            self._pool.statistics(),
            self._statements,
            self._errors,
            self._conn_errors,
            self._timeouts,
            self._cancelled,
            self._retried,
        )

    # ------------------------------------------------------------------ statements

    async def execute(
        self, sql: str, *args: Any, timeout: float | None = None, idempotent: bool = False
    ) -> int:
        """Run a statement; return how many rows it affected (-1 when the driver cannot tell)."""
        t = translate(sql, self._dialect)
        result: int = await self._run("execute", t.sql, bind(t, args), (), timeout, idempotent)
        return result

    async def executemany(
        self,
        sql: str,
        args: Sequence[Any],
        *,
        timeout: float | None = None,
        idempotent: bool = False,
    ) -> None:
        """Run a statement once per item of ``args`` (tuples, or mappings for ``:name``)."""
        t = translate(sql, self._dialect)
        rows = [bind(t, a if t.names is None else (a,)) for a in args]
        await self._run("executemany", t.sql, rows, (), timeout, idempotent)

    async def fetch(
        self, sql: str, *args: Any, timeout: float | None = None, idempotent: bool = False
    ) -> list[Row]:
        """Run a query; return every row."""
        t = translate(sql, self._dialect)
        rows: list[Row] = await self._run("fetch", t.sql, bind(t, args), (), timeout, idempotent)
        return rows

    async def fetchrow(
        self, sql: str, *args: Any, timeout: float | None = None, idempotent: bool = False
    ) -> Row | None:
        """Run a query; return its first row, or None."""
        t = translate(sql, self._dialect)
        row: Row | None = await self._run("fetchrow", t.sql, bind(t, args), (), timeout, idempotent)
        return row

    async def fetchval(
        self,
        sql: str,
        *args: Any,
        column: int = 0,
        timeout: float | None = None,
        idempotent: bool = False,
    ) -> Any:
        """Run a query; return one column (default the first) of its first row, or None."""
        t = translate(sql, self._dialect)
        return await self._run("fetchval", t.sql, bind(t, args), (column,), timeout, idempotent)

    async def iterate(
        self, sql: str, *args: Any, batch: int = 100, timeout: float | None = None
    ) -> AsyncGenerator[Row, None]:
        """``async for row in db.iterate(...)``: stream rows through a server-side cursor
        (PostgreSQL: inside a transaction; MySQL: an unbuffered cursor; SQLite: in batches).
        The connection is held until the loop ends; leaving early closes it."""
        if not isinstance(batch, int) or batch < 1:
            raise ValueError(f"iterate: 'batch' must be a positive int, got {batch!r}")
        conn = await self._connection(timeout)
        rows = conn.iterate(sql, *args, batch=batch)
        try:
            async for row in rows:
                yield row
        finally:
            try:
                await rows.aclose()  # marks the connection broken when left mid-stream
            finally:
                conn._release()

    def connection(self, timeout: float | None = None) -> _Lease:
        """``async with db.connection() as conn:`` — hold one connection for several statements."""
        return _Lease(self, timeout)

    def transaction(
        self,
        *,
        isolation: str | None = None,
        readonly: bool = False,
        timeout: float | None = None,
    ) -> Transaction:
        """``async with db.transaction(isolation="serializable") as tx:`` — commit on success;
        roll back on error or cancellation; ``tx.transaction()`` nests a savepoint."""
        return Transaction(None, check_isolation(isolation), readonly, db=self, timeout=timeout)

    async def run_in_transaction(
        self,
        work: Callable[[Connection], Awaitable[T]],
        *,
        isolation: str | None = None,
        readonly: bool = False,
        retries: int = 3,
    ) -> T:
        """Run ``await work(tx)`` in a transaction, again from the start (up to ``retries`` more
        times, with backoff) when it fails with a deadlock or serialization failure."""
        attempt = 0
        while True:
            try:
                async with self.transaction(isolation=isolation, readonly=readonly) as tx:
                    return await work(tx)
            except TransactionError:
                if attempt >= retries:
                    raise
                attempt += 1
                self._retried += 1
                await run_with_backoff(attempt)

    # ------------------------------------------------------------------ internals

    def _timeout(self, timeout: float | None) -> float | None:
        try:
            limit = effective_timeout(self._command_timeout if timeout is None else timeout)
        except DeadlineExceeded as exc:
            self._timeouts += 1
            raise DBTimeoutError("the caller's deadline expired before the statement ran") from exc
        if limit is not None:
            left = remaining()
            if left is not None and limit >= left:
                # Fire our own timer just before the caller's deadline cancels the task: the
                # statement is then stopped on the server by us, and the caller gets a
                # DBTimeoutError rather than a cancellation from inside the driver.
                limit = max(left - _DEADLINE_MARGIN, _DEADLINE_MARGIN / 4)
        return limit

    async def _run(
        self,
        method: str,
        sql: str,
        args: Sequence[Any],
        extra: tuple[Any, ...],
        timeout: float | None,
        idempotent: bool,
        *,
        observe: bool = True,
    ) -> Any:
        if observe and self._observers:
            return await self._observed(
                self._run(method, sql, args, extra, timeout, idempotent, observe=False), sql
            )
        attempt = 0
        while True:
            limit = self._timeout(timeout)
            if limit is None:
                raw = await self._get(None)
            else:
                started = _monotonic()
                raw = await self._get(limit)
                limit = max(limit - (_monotonic() - started), 0.001)
            try:
                result = await getattr(raw, method)(sql, args, *extra, limit)
            except DBConnectionError:
                self._conn_errors += 1
                self._put(raw, True)
                if idempotent and attempt < self._retries:
                    attempt += 1
                    self._retried += 1
                    await run_with_backoff(attempt)
                    continue
                raise
            except DBTimeoutError:
                self._timeouts += 1
                self._put(raw, True)
                raise
            except DBError:
                self._errors += 1
                self._statements += 1
                self._put(raw, raw.in_transaction)
                raise
            except BaseException:
                self._cancelled += 1
                self._cancel_in_background(raw)
                self._put(raw, True)
                raise
            self._statements += 1
            raw.queries += 1
            self._put(raw, False)
            return result

    def _query_info(self, sql: str) -> QueryInfo:
        url = self.url
        return QueryInfo(
            self.driver.PLUGIN_NAME,
            operation_of(sql),
            sql,
            url.database or None,
            url.host,
            url.port,
            self._pool.name,
        )

    def _observed(self, statement: Coroutine[Any, Any, T], sql: str) -> Coroutine[Any, Any, T]:
        return observed(self._observers, self._infos.get(sql), statement)

    async def _get(self, limit: float | None) -> DriverConnection:
        pool = self._pool
        if limit is not None and limit > self._acquire_timeout:
            limit = self._acquire_timeout
        while True:
            try:
                raw = await pool.get(limit)
            except PoolTimeout as exc:
                self._timeouts += 1
                raise DBPoolTimeout(str(exc)) from exc
            except DeadlineExceeded as exc:
                self._timeouts += 1
                raise DBTimeoutError(
                    "the caller's deadline expired waiting for a connection"
                ) from exc
            if _monotonic() - raw.released < self._ping_after and not raw.is_closed():
                return raw
            try:
                await raw.ping(limit if limit is not None else self._connect_timeout)
            except DBError:
                await pool.put(raw, discard=True)
                continue
            except BaseException:
                await pool.put(raw, discard=True)
                raise
            return raw

    def _put(self, raw: DriverConnection, discard: bool) -> None:
        """Give ``raw`` back to the pool; closed instead when ``discard`` is set, when it has run
        ``max_queries``, is closed, or the server still has it in a transaction (a failed or
        unknown state is never handed to the next user)."""
        if not discard and (
            raw.queries >= self._max_queries or raw.is_closed() or raw.in_transaction
        ):
            discard = True
        raw.released = _monotonic()
        self._pool.put_nowait(raw, discard)

    async def _connection(self, timeout: float | None) -> Connection:
        return Connection(self, await self._get(self._timeout(timeout)))

    async def _open(self) -> DriverConnection:
        """The pool's factory: connect, retrying with backoff for ``reconnect_window`` seconds
        (a restarting database comes back); wrong credentials fail at once."""
        give_up = _monotonic() + self._reconnect_window
        attempt = 0
        while True:
            try:
                return await self.driver.connect(self._connect_timeout)
            except AuthenticationError:
                self._conn_errors += 1
                raise
            except DBConnectionError:
                self._conn_errors += 1
                attempt += 1
                if _monotonic() >= give_up:
                    raise
                await run_with_backoff(attempt)

    @staticmethod
    async def _close_raw(raw: DriverConnection) -> None:
        await raw.close(2.0)

    def _cancel_in_background(self, raw: DriverConnection) -> None:
        """Stop a statement that was abandoned mid-flight (its caller was cancelled)."""
        try:
            task = asyncio.get_running_loop().create_task(raw.cancel_on_server())
        except RuntimeError:  # pragma: no cover - no loop
            return
        self._background.add(task)
        task.add_done_callback(self._background.discard)


class _Lease:
    __slots__ = ("_conn", "_db", "_timeout")

    def __init__(self, db: Database, timeout: float | None) -> None:
        self._db = db
        self._timeout = timeout
        self._conn: Connection | None = None

    async def __aenter__(self) -> Connection:
        self._conn = await self._db._connection(self._timeout)
        return self._conn

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        conn = self._conn
        if conn is not None:
            if conn._raw.in_transaction and not conn._depth:
                conn._broken = True  # a transaction left open by hand: never hand it on
            conn._release()
