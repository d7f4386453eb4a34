"""PostgreSQL through asyncpg (imported on first connect; install ``flowcoro-db[postgres]``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from typing import Any, ClassVar

from flowcoro.db._errors import from_sqlstate
from flowcoro.db._sql import POSTGRES, Dialect
from flowcoro.db.abc import Driver, DriverConnection
from flowcoro.db.errors import (
    AuthenticationError,
    DBConnectionError,
    DBError,
    DBTimeoutError,
    QueryError,
)
from flowcoro.db.rows import Row

__all__ = ["PostgresDriver", "PostgresConnection"]


def _translate(exc: BaseException) -> DBError:
    """asyncpg's exception -> ours (the caller chains it with ``from``)."""
    import asyncpg

    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", None)
        return from_sqlstate(state)(f"[{state}] {exc}")
    if isinstance(exc, TimeoutError):
        return DBTimeoutError("the statement did not finish in time (cancelled on the server)")
    if isinstance(exc, (OSError, asyncpg.exceptions.ConnectionDoesNotExistError)):
        return DBConnectionError(f"connection to PostgreSQL lost or refused: {exc}")
    if isinstance(exc, asyncpg.InterfaceError):
        if "connection is closed" in str(exc):
            return DBConnectionError(f"connection to PostgreSQL is closed: {exc}")
        return QueryError(str(exc))
    if isinstance(exc, (asyncpg.exceptions.InternalClientError, ValueError, TypeError)):
        return QueryError(f"{type(exc).__name__}: {exc}")
    return DBError(f"{type(exc).__name__}: {exc}")  # pragma: no cover - defensive


def _status_count(status: str) -> int:
    tail = status.rpartition(" ")[2]
    return int(tail) if tail.isdigit() else -1


def _index(record: Any) -> dict[str, int]:
    return {key: i for i, key in enumerate(record.keys())}


class PostgresConnection(DriverConnection):
    __slots__ = ("raw",)

    def __init__(self, raw: Any) -> None:
        super().__init__()
        self.raw = raw

    async def execute(self, sql: str, args: Sequence[Any], timeout: float | None) -> int:
        try:
            if args:
                status = await self.raw.execute(sql, *args, timeout=timeout)
            else:
                status = await self.raw.execute(sql, timeout=timeout)
        except Exception as exc:
            raise _translate(exc) from exc
        return _status_count(status)

    async def control(self, sql: str, timeout: float | None) -> None:
        # asyncpg sends an argument-less statement as one simple Query message: one round trip,
        # nothing prepared or cached (measured cheaper than a prepared BEGIN/COMMIT on both ends)
        try:
            await self.raw.execute(sql, timeout=timeout)
        except Exception as exc:
            raise _translate(exc) from exc

    async def executemany(
        self, sql: str, args: Sequence[Sequence[Any]], timeout: float | None
    ) -> None:
        try:
            await self.raw.executemany(sql, args, timeout=timeout)
        except Exception as exc:
            raise _translate(exc) from exc

    async def fetch(self, sql: str, args: Sequence[Any], timeout: float | None) -> list[Row]:
        try:
            records = await self.raw.fetch(sql, *args, timeout=timeout)
        except Exception as exc:
            raise _translate(exc) from exc
        if not records:
            return []
        index = _index(records[0])
        return [Row(index, r) for r in records]

    async def fetchrow(self, sql: str, args: Sequence[Any], timeout: float | None) -> Row | None:
        try:
            record = await self.raw.fetchrow(sql, *args, timeout=timeout)
        except Exception as exc:
            raise _translate(exc) from exc
        return None if record is None else Row(_index(record), record)

    async def fetchval(
        self, sql: str, args: Sequence[Any], column: int, timeout: float | None
    ) -> Any:
        try:
            return await self.raw.fetchval(sql, *args, column=column, timeout=timeout)
        except Exception as exc:
            raise _translate(exc) from exc

    async def cursor(self, sql: str, args: Sequence[Any], batch: int) -> AsyncGenerator[Row, None]:
        raw = self.raw
        own = not raw.is_in_transaction()
        try:
            if own:
                await raw.execute("BEGIN READ ONLY")
            index: dict[str, int] | None = None
            async for record in raw.cursor(sql, *args, prefetch=batch):
                if index is None:
                    index = _index(record)
                yield Row(index, record)
            if own:
                await raw.execute("COMMIT")
        except Exception as exc:
            raise _translate(exc) from exc

    @property
    def in_transaction(self) -> bool:
        return bool(self.raw.is_in_transaction())

    async def ping(self, timeout: float | None) -> None:
        try:
            await self.raw.execute(";", timeout=timeout)
        except Exception as exc:
            raise _translate(exc) from exc

    def is_closed(self) -> bool:
        return bool(self.raw.is_closed())

    async def close(self, timeout: float | None) -> None:
        raw = self.raw
        # asyncpg sends a cancel request when a statement times out or its task is cancelled;
        # let it reach the server before the socket goes, or the query runs on unobserved.
        pending = [t for t in getattr(raw, "_cancellations", ()) if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=timeout)
        raw.terminate()

    def terminate(self) -> None:
        self.raw.terminate()


class PostgresDriver(Driver):
    """``postgresql://user:password@host:port/database?options`` (``postgres://`` too).

    Driver options: anything ``asyncpg.connect`` takes (``ssl``, ``server_settings``...).
    ``pgbouncer=True`` turns the prepared-statement cache off (safe behind PgBouncer in
    transaction mode); otherwise each connection caches ``statement_cache_size`` statements.
    """

    PLUGIN_NAME = "postgresql"
    SCHEMES = ("postgresql", "postgres", "postgresql+asyncpg")
    DIALECT: ClassVar[Dialect] = POSTGRES

    async def connect(self, timeout: float | None) -> DriverConnection:
        import asyncpg

        options = dict(self.options)
        cache = int(options.pop("statement_cache_size", 256))
        if options.pop("pgbouncer", False):
            cache = 0
        connect_timeout = options.pop("connect_timeout", 10.0)
        url = self.url
        dsn = "postgresql://" + url.raw.split("://", 1)[1]
        try:
            raw = await asyncpg.connect(
                dsn,
                timeout=timeout or connect_timeout,
                statement_cache_size=cache,
                **options,
            )
        except asyncpg.InvalidAuthorizationSpecificationError as exc:
            raise AuthenticationError(f"PostgreSQL at {url.address} refused: {exc}") from exc
        except asyncpg.InvalidPasswordError as exc:
            raise AuthenticationError(f"PostgreSQL at {url.address} refused: {exc}") from exc
        except (OSError, TimeoutError) as exc:
            raise DBConnectionError(
                f"cannot connect to PostgreSQL at {url.address}: {exc or type(exc).__name__}"
            ) from exc
        except Exception as exc:
            err = _translate(exc)
            if not isinstance(err, DBConnectionError):
                err = DBConnectionError(f"cannot connect to PostgreSQL at {url.address}: {err}")
            raise err from exc
        return PostgresConnection(raw)
