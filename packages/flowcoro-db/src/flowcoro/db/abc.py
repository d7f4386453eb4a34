"""What a database driver implements: a `Driver` class registered through ``flowcoro_db_drivers``
and the `DriverConnection` objects it opens.

The `Database` front end does everything else (placeholder translation, pooling, deadlines,
retries, transactions), so a driver only speaks to its database: statements arrive already
translated to the driver's `paramstyle` and arguments already arranged in order. A driver
translates its own exceptions to `flowcoro.db.errors` before they leave it.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from flowcoro.db._sql import Dialect
    from flowcoro.db.rows import Row
    from flowcoro.db.url import URL

__all__ = ["Driver", "DriverConnection", "ISOLATION_LEVELS"]

#: Isolation levels `Database.transaction` accepts (SQL spelling, lower case).
ISOLATION_LEVELS = frozenset(
    ("read uncommitted", "read committed", "repeatable read", "serializable")
)


class DriverConnection(ABC):
    """One open connection. The pool hands it to one user at a time; it is never shared.

    ``timeout`` arguments are seconds or None (no limit). When a timeout expires the driver raises
    `DBTimeoutError` and, where the database can, stops the statement on the server.
    """

    __slots__ = ("created", "queries", "released")

    def __init__(self) -> None:
        self.created = time.monotonic()
        #: when the pool last got it back (drives the idle health check)
        self.released = self.created
        #: statements run on it (drives ``max_queries``)
        self.queries = 0

    @abstractmethod
    async def execute(self, sql: str, args: Sequence[Any], timeout: float | None) -> int:
        """Run a statement; return the number of rows it affected (-1 when unknown)."""

    @abstractmethod
    async def executemany(
        self, sql: str, args: Sequence[Sequence[Any]], timeout: float | None
    ) -> None:
        """Run a statement once per argument tuple."""

    @abstractmethod
    async def fetch(self, sql: str, args: Sequence[Any], timeout: float | None) -> list[Row]:
        """Run a query; return every row."""

    async def fetchrow(self, sql: str, args: Sequence[Any], timeout: float | None) -> Row | None:
        """Run a query; return its first row or None."""
        rows = await self.fetch(sql, args, timeout)
        return rows[0] if rows else None

    async def fetchval(
        self, sql: str, args: Sequence[Any], column: int, timeout: float | None
    ) -> Any:
        """Run a query; return one column of its first row, or None without rows."""
        row = await self.fetchrow(sql, args, timeout)
        return None if row is None else row[column]

    @abstractmethod
    def cursor(self, sql: str, args: Sequence[Any], batch: int) -> AsyncGenerator[Row, None]:
        """Stream a query's rows, ``batch`` at a time (server-side cursor where there is one)."""

    async def control(self, sql: str, timeout: float | None) -> None:
        """Run a transaction-control statement (BEGIN, COMMIT, ROLLBACK, SAVEPOINT ...): no
        arguments, no result. A driver may override it with a cheaper path than `execute`."""
        await self.execute(sql, (), timeout)

    def begin_sql(self, isolation: str | None, readonly: bool) -> list[str]:
        """Statements that open a transaction (the front end validated ``isolation``)."""
        mode = []
        if isolation:
            mode.append(f"ISOLATION LEVEL {isolation.upper()}")
        if readonly:
            mode.append("READ ONLY")
        return ["BEGIN" + (" " + ", ".join(mode) if mode else "")]

    @property
    def in_transaction(self) -> bool:
        """Whether the server thinks a transaction is open (used to refuse leaking one)."""
        return False

    @abstractmethod
    async def ping(self, timeout: float | None) -> None:
        """A cheap round trip; raise `DBConnectionError` when the connection is dead."""

    @abstractmethod
    def is_closed(self) -> bool:
        """True once the connection is known to be closed or lost."""

    @abstractmethod
    async def close(self, timeout: float | None) -> None:
        """Close politely (finish a pending server-side cancel first); never raise."""

    @abstractmethod
    def terminate(self) -> None:
        """Close at once, without talking to the server."""

    async def cancel_on_server(self) -> None:  # noqa: B027 - optional
        """Stop the statement this connection is running, from outside it (best effort)."""


class Driver(ABC):
    """A database driver plugin: ``PLUGIN_NAME``, the URL ``SCHEMES`` it serves, its dialect.

    `Database` builds one instance per database with the parsed URL and the driver options the
    user passed, then calls `connect` each time the pool needs a connection.
    """

    PLUGIN_NAME: ClassVar[str]
    SCHEMES: ClassVar[tuple[str, ...]]
    DIALECT: ClassVar[Dialect]
    #: drivers whose connections are cheap and local (SQLite) may ask for a smaller default pool
    DEFAULT_MAX_SIZE: ClassVar[int] = 10

    def __init__(self, url: URL, options: dict[str, Any]) -> None:
        self.url = url
        self.options = options

    def default_max_size(self) -> int:
        """``max_size`` when the user gives none."""
        return self.DEFAULT_MAX_SIZE

    @abstractmethod
    async def connect(self, timeout: float | None) -> DriverConnection:
        """Open a connection; raise `DBConnectionError` / `AuthenticationError` on failure."""

    async def aclose(self) -> None:  # noqa: B027 - optional
        """Release what the driver keeps beside its connections (background cancels)."""
