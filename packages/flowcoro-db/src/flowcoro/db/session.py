"""`Connection` (a pooled connection held for a block) and `Transaction` (one held in a
transaction, nested blocks as savepoints)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from flowcoro.core.errors import BusyResourceError, ClosedResourceError
from flowcoro.db._sql import bind, translate
from flowcoro.db.abc import ISOLATION_LEVELS
from flowcoro.db.errors import DBConnectionError, DBError, DBTimeoutError, TransactionError

if TYPE_CHECKING:
    from types import TracebackType

    from flowcoro.db.abc import DriverConnection
    from flowcoro.db.database import Database
    from flowcoro.db.rows import Row

__all__ = ["Connection", "Transaction"]


def check_isolation(isolation: str | None) -> str | None:
    if isolation is None:
        return None
    level = " ".join(str(isolation).lower().replace("_", " ").split())
    if level not in ISOLATION_LEVELS:
        raise ValueError(
            f"isolation: expected one of {sorted(ISOLATION_LEVELS)}, got {isolation!r}"
        )
    return level


class Connection:
    """A connection taken from the pool for the length of an ``async with db.connection()`` block.

    One task at a time: a second concurrent statement raises `BusyResourceError` instead of
    interleaving on the wire. If a statement is cancelled or times out the connection is closed
    when the block ends (never returned to the pool), and later statements raise.
    """

    __slots__ = ("_broken", "_busy", "_db", "_depth", "_raw", "_released", "_savepoints")

    def __init__(self, db: Database, raw: DriverConnection) -> None:
        self._db = db
        self._raw = raw
        self._busy = False
        self._broken = False
        self._released = False
        self._depth = 0  # open transaction blocks on this connection
        self._savepoints = 0

    @property
    def raw(self) -> DriverConnection:
        """The driver's connection adapter (``.raw.raw`` is the client library's object)."""
        return self._raw

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0

    async def _call(
        self, method: str, sql: str, args: Sequence[Any], *extra: Any, observe: bool = True
    ) -> Any:
        db = self._db
        if observe and db._observers:
            return await db._observed(self._call(method, sql, args, *extra, observe=False), sql)
        if self._released or self._broken or self._busy:
            self._refuse()
        timeout = self._db._timeout(extra[-1])
        self._busy = True
        raw = self._raw
        try:
            result = await getattr(raw, method)(sql, args, *extra[:-1], timeout)
        except (DBConnectionError, DBTimeoutError):
            self._broken = True
            raise
        except DBError:
            raise
        except BaseException:
            self._broken = True
            self._db._cancel_in_background(raw)
            raise
        finally:
            self._busy = False
            raw.queries += 1
        return result

    def _refuse(self) -> NoReturn:
        """Raise why this connection cannot run a statement now."""
        if self._released:
            raise ClosedResourceError("the connection was given back to the pool")
        if self._broken:
            raise DBConnectionError(
                "the connection was broken by an earlier cancelled or failed call"
            )
        raise BusyResourceError("another task is running a statement on this connection")

    async def _control(self, sql: str, *, observe: bool = True) -> None:
        """A transaction-control statement (BEGIN, COMMIT, ROLLBACK, SAVEPOINT...) through the
        driver's `control`: `_call` without arguments or a row count, the same checks and the
        same failure handling."""
        db = self._db
        if observe and db._observers:
            await db._observed(self._control(sql, observe=False), sql)
            return
        if self._released or self._broken or self._busy:
            self._refuse()
        timeout = db._timeout(None)
        self._busy = True
        raw = self._raw
        try:
            await raw.control(sql, timeout)
        except (DBConnectionError, DBTimeoutError):
            self._broken = True
            raise
        except DBError:
            raise
        except BaseException:
            self._broken = True
            db._cancel_in_background(raw)
            raise
        finally:
            self._busy = False
            raw.queries += 1

    async def execute(self, sql: str, *args: Any, timeout: float | None = None) -> int:
        """Run a statement; return how many rows it affected (-1 when the driver cannot tell)."""
        t = translate(sql, self._db._dialect)
        result: int = await self._call("execute", t.sql, bind(t, args), timeout)
        return result

    async def executemany(
        self, sql: str, args: Sequence[Any], *, timeout: float | None = None
    ) -> None:
        """Run a statement once per item of ``args`` (each a tuple, or a mapping for ``:name``)."""
        t = translate(sql, self._db._dialect)
        rows = [bind(t, a if t.names is None else (a,)) for a in args]
        await self._call("executemany", t.sql, rows, timeout)

    async def fetch(self, sql: str, *args: Any, timeout: float | None = None) -> list[Row]:
        t = translate(sql, self._db._dialect)
        result: list[Row] = await self._call("fetch", t.sql, bind(t, args), timeout)
        return result

    async def fetchrow(self, sql: str, *args: Any, timeout: float | None = None) -> Row | None:
        t = translate(sql, self._db._dialect)
        result: Row | None = await self._call("fetchrow", t.sql, bind(t, args), timeout)
        return result

    async def fetchval(
        self, sql: str, *args: Any, column: int = 0, timeout: float | None = None
    ) -> Any:
        t = translate(sql, self._db._dialect)
        return await self._call("fetchval", t.sql, bind(t, args), column, timeout)

    async def iterate(self, sql: str, *args: Any, batch: int = 100) -> AsyncGenerator[Row, None]:
        """Stream rows (a server-side cursor where the database has one)."""
        if self._busy:
            raise BusyResourceError("another task is running a statement on this connection")
        t = translate(sql, self._db._dialect)
        self._busy = True
        cursor = self._raw.cursor(t.sql, bind(t, args), batch)
        try:
            async for row in cursor:
                yield row
        except (DBConnectionError, DBTimeoutError):
            self._broken = True
            raise
        except DBError:
            raise
        except BaseException:
            # cancelled, or the consumer stopped early: the cursor may be mid-stream
            self._broken = True
            raise
        finally:
            self._busy = False
            await cursor.aclose()

    def transaction(self, *, isolation: str | None = None, readonly: bool = False) -> Transaction:
        """A transaction on this connection; inside another one, a savepoint."""
        return Transaction(self, check_isolation(isolation), readonly)

    def _release(self) -> None:
        if self._released:
            return
        self._released = True
        # `Database._put` also discards a connection the server still has in a transaction (a
        # bare BEGIN, a failed stream, a COMMIT that did not finish): never handed to the next user
        self._db._put(self._raw, self._broken)


class Transaction:
    """``async with db.transaction() as tx:`` — commit on success, roll back on error or
    cancellation. ``tx.transaction()`` opens a savepoint. ``tx`` has the `Connection` methods."""

    __slots__ = ("_conn", "_db", "_isolation", "_own", "_readonly", "_savepoint", "_timeout")

    def __init__(
        self,
        conn: Connection | None,
        isolation: str | None,
        readonly: bool,
        *,
        db: Database | None = None,
        timeout: float | None = None,
    ) -> None:
        self._conn = conn
        self._own = conn is None
        self._db = db
        self._isolation = isolation
        self._readonly = readonly
        self._savepoint: str | None = None
        self._timeout = timeout

    @property
    def connection(self) -> Connection:
        if self._conn is None:
            raise ClosedResourceError("the transaction has not started (use 'async with')")
        return self._conn

    async def __aenter__(self) -> Connection:
        conn = self._conn
        if conn is None:
            db = self._db
            assert db is not None
            conn = self._conn = Connection(db, await db._get(db._timeout(self._timeout)))
        try:
            if conn._depth:
                conn._savepoints += 1
                self._savepoint = f"flowcoro_sp_{conn._savepoints}"
                await conn._control(f"SAVEPOINT {self._savepoint}")
            else:
                for statement in conn._raw.begin_sql(self._isolation, self._readonly):
                    await conn._control(statement)
        except BaseException:
            if self._own:
                conn._release()  # discarded if the server is left in a transaction
            raise
        conn._depth += 1
        return conn

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        conn = self.connection
        conn._depth -= 1
        try:
            if conn._broken:
                # The server rolls back when the connection closes; nothing else is safe.
                if exc is None:
                    raise TransactionError("the transaction's connection broke; it did not commit")
                return
            sp = self._savepoint
            if exc is None:
                try:
                    await conn._control(f"RELEASE SAVEPOINT {sp}" if sp else "COMMIT")
                except BaseException:
                    conn._broken = True
                    raise
                return
            try:
                await conn._control(f"ROLLBACK TO SAVEPOINT {sp}" if sp else "ROLLBACK")
            except BaseException:  # the original exception matters more
                conn._broken = True
        finally:
            if self._own:
                # discarded when broken or when the server is still in a transaction
                conn._release()


async def run_with_backoff(attempt: int) -> None:
    """Sleep before retry number ``attempt`` (1, 2, ...): 20 ms doubling, capped at 1 s."""
    await asyncio.sleep(min(0.02 * (2 ** (attempt - 1)), 1.0) * (0.5 + (time.monotonic() % 0.5)))
