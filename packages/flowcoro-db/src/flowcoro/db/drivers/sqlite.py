"""SQLite through aiosqlite (a thread per connection; ``flowcoro-db[sqlite]``).

URLs: ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``, ``sqlite://:memory:``
(one connection: each would otherwise see its own empty database). File databases use WAL and a
5 s busy timeout. SQLite binds no decimals, dates or times: they are stored as text (ISO 8601
for dates and times) and come back as text. Transactions are always serializable.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import sqlite3
from collections.abc import AsyncGenerator, Sequence
from typing import Any, ClassVar

from flowcoro.db._sql import SQLITE, Dialect
from flowcoro.db.abc import Driver, DriverConnection
from flowcoro.db.errors import (
    DBConnectionError,
    DBError,
    DBTimeoutError,
    IntegrityError,
    QueryError,
    SyntaxError,
    TransactionError,
    UniqueViolationError,
)
from flowcoro.db.rows import Row

__all__ = ["SQLiteDriver", "SQLiteConnection"]

_TEXT_TYPES = (decimal.Decimal, dt.date, dt.time)


def _translate(exc: BaseException) -> DBError:
    text = str(exc)
    if isinstance(exc, TimeoutError):
        return DBTimeoutError("the statement did not finish in time (interrupted)")
    if isinstance(exc, sqlite3.IntegrityError):
        if "UNIQUE" in text or "PRIMARY KEY" in text:
            return UniqueViolationError(text)
        return IntegrityError(text)
    if isinstance(exc, sqlite3.OperationalError):
        if "syntax error" in text or "incomplete input" in text:
            return SyntaxError(text)
        if "locked" in text or "busy" in text:
            return TransactionError(text)
        if "interrupted" in text:
            return DBTimeoutError(text)
        if "unable to open" in text or "disk I/O" in text:
            return DBConnectionError(text)
        return QueryError(text)
    if isinstance(exc, sqlite3.ProgrammingError) and "closed" in text:
        return DBConnectionError(text)
    if isinstance(exc, ValueError) and "no active connection" in text:
        return DBConnectionError(text)
    if isinstance(exc, (sqlite3.Error, ValueError, TypeError, OverflowError)):
        return QueryError(f"{type(exc).__name__}: {text}")
    return DBError(f"{type(exc).__name__}: {text}")  # pragma: no cover - defensive


def _adapt(args: Sequence[Any]) -> Sequence[Any]:
    for a in args:
        if isinstance(a, _TEXT_TYPES):
            return [
                (v.isoformat() if not isinstance(v, decimal.Decimal) else str(v))
                if isinstance(v, _TEXT_TYPES)
                else v
                for v in args
            ]
    return args


class SQLiteConnection(DriverConnection):
    __slots__ = ("raw",)

    def __init__(self, raw: Any) -> None:
        super().__init__()
        self.raw = raw

    async def _call(self, timeout: float | None, fn: Any, *args: Any) -> Any:
        try:
            if timeout is None:
                return await fn(*args)
            async with asyncio.timeout(timeout):
                return await fn(*args)
        except TimeoutError as exc:
            self._interrupt()
            raise _translate(exc) from exc
        except Exception as exc:
            raise _translate(exc) from exc

    def _interrupt(self) -> None:
        inner = getattr(self.raw, "_connection", None)
        if inner is not None:
            inner.interrupt()  # thread-safe: stops the statement running in the worker

    async def execute(self, sql: str, args: Sequence[Any], timeout: float | None) -> int:
        cur = await self._call(timeout, self.raw.execute, sql, _adapt(args))
        count = int(cur.rowcount)
        await cur.close()
        return count

    async def executemany(
        self, sql: str, args: Sequence[Sequence[Any]], timeout: float | None
    ) -> None:
        cur = await self._call(timeout, self.raw.executemany, sql, [_adapt(a) for a in args])
        await cur.close()

    async def fetch(self, sql: str, args: Sequence[Any], timeout: float | None) -> list[Row]:
        rows = await self._call(timeout, self.raw.execute_fetchall, sql, _adapt(args))
        if not rows:
            return []
        index = {k: i for i, k in enumerate(rows[0].keys())}
        return [Row(index, r) for r in rows]

    async def cursor(self, sql: str, args: Sequence[Any], batch: int) -> AsyncGenerator[Row, None]:
        try:
            cur = await self.raw.execute(sql, _adapt(args))
            try:
                index = {d[0]: i for i, d in enumerate(cur.description or ())}
                while True:
                    rows = await cur.fetchmany(batch)
                    if not rows:
                        break
                    for r in rows:
                        yield Row(index, r)
            finally:
                await cur.close()
        except Exception as exc:
            raise _translate(exc) from exc

    def begin_sql(self, isolation: str | None, readonly: bool) -> list[str]:
        # IMMEDIATE takes the write lock up front: no deadlock when two readers turn writers
        return ["BEGIN" if readonly else "BEGIN IMMEDIATE"]

    @property
    def in_transaction(self) -> bool:
        inner = getattr(self.raw, "_connection", None)
        return bool(inner is not None and inner.in_transaction)

    async def ping(self, timeout: float | None) -> None:
        try:
            async with asyncio.timeout(timeout):
                await self.raw.execute_fetchall("SELECT 1")
        except Exception as exc:
            raise DBConnectionError(f"SQLite connection failed its health check: {exc}") from exc

    def is_closed(self) -> bool:
        return getattr(self.raw, "_connection", None) is None

    async def close(self, timeout: float | None) -> None:
        self._interrupt()
        try:
            async with asyncio.timeout(timeout):
                await self.raw.close()
        except Exception:
            self.raw.stop()
        except BaseException:
            self.raw.stop()
            raise

    def terminate(self) -> None:
        self._interrupt()
        self.raw.stop()

    async def cancel_on_server(self) -> None:
        self._interrupt()


class SQLiteDriver(Driver):
    PLUGIN_NAME = "sqlite"
    SCHEMES = ("sqlite", "sqlite3", "sqlite+aiosqlite")
    DIALECT: ClassVar[Dialect] = SQLITE
    DEFAULT_MAX_SIZE = 4

    def __init__(self, url: Any, options: dict[str, Any]) -> None:
        super().__init__(url, options)
        self._wal = False

    def default_max_size(self) -> int:
        return 1 if self._memory else self.DEFAULT_MAX_SIZE

    @property
    def _memory(self) -> bool:
        return self.url.database in ("", ":memory:")

    async def connect(self, timeout: float | None) -> DriverConnection:
        import aiosqlite

        options = dict(self.options)
        cache = int(options.pop("statement_cache_size", 256))
        options.pop("pgbouncer", None)
        options.pop("connect_timeout", None)
        path = self.url.database or ":memory:"
        options.setdefault("timeout", 5.0)
        raw = aiosqlite.connect(
            path, isolation_level=None, cached_statements=max(cache, 1), **options
        )
        try:
            await raw
            raw.row_factory = sqlite3.Row
            if not self._memory and not self._wal:
                # once per database: the mode is stored in the file, and switching it while
                # other connections work would fail with "database is locked"
                self._wal = True
                try:
                    await raw.execute("PRAGMA journal_mode=WAL")
                except sqlite3.OperationalError:
                    pass  # another process holds the lock while switching it: WAL is on its way
        except BaseException as exc:
            done = raw.stop()  # failed or cancelled half-way: never leave the worker behind
            if isinstance(exc, Exception):
                if done is not None:
                    await asyncio.wait([done], timeout=1.0)
                raise DBConnectionError(f"cannot open SQLite database {path!r}: {exc}") from exc
            raise
        return SQLiteConnection(raw)
