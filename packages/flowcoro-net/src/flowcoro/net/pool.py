"""`ConnectionPool`: client connections kept per address, on the core `Pool`.

Each address (host and port, or a Unix path) gets its own bounded core pool, so the core's
guarantees hold per address: first-come first-served waiters, a cancelled or failed holder never
hands its connection to the next user, ``max_idle`` / ``max_lifetime``, statistics. Before a
connection is lent again it is checked: still open, the peer has not closed it, and no unread
bytes are left over from the previous user.
"""

from __future__ import annotations

import ssl as _ssl
from typing import TYPE_CHECKING

from flowcoro.core.pool import Pool, PoolStatistics
from flowcoro.net.errors import ClosedPoolError, InvalidLimit
from flowcoro.net.limits import Limits
from flowcoro.net.streams import Connection, connect

if TYPE_CHECKING:
    from types import TracebackType
    from typing import Self

    from flowcoro.core.pool import _Acquire

__all__ = ["ConnectionPool"]

Address = tuple[str, int] | str


async def _healthy(conn: Connection) -> bool:
    proto = conn.protocol
    return not proto.closed and not proto._eof and not proto._buffer


async def _close(conn: Connection) -> None:
    await conn.aclose()


class ConnectionPool:
    """Pooled client connections: ``async with pool.acquire("10.0.0.5", 6379) as conn:``.

    ``max_per_address`` connections per address (waiters beyond it wait up to
    ``acquire_timeout``, bounded by the caller's deadline), ``max_addresses`` addresses at most,
    ``connect_timeout`` per new connection, idle connections closed after ``max_idle`` seconds,
    every connection retired after ``max_lifetime`` seconds (None: never).
    """

    def __init__(
        self,
        *,
        name: str = "net",
        max_per_address: int = 10,
        max_addresses: int = 1024,
        acquire_timeout: float | None = 30.0,
        connect_timeout: float | None = 10.0,
        max_idle: float | None = 60.0,
        max_lifetime: float | None = None,
        ssl: _ssl.SSLContext | bool | None = None,
        read_timeout: float | None = None,
        write_timeout: float | None = None,
        limits: Limits | None = None,
    ) -> None:
        if max_per_address < 1:
            raise InvalidLimit("max_per_address", f"must be >= 1, got {max_per_address!r}")
        if max_addresses < 1:
            raise InvalidLimit("max_addresses", f"must be >= 1, got {max_addresses!r}")
        for field, value in (
            ("acquire_timeout", acquire_timeout),
            ("max_idle", max_idle),
            ("max_lifetime", max_lifetime),
        ):
            if value is not None and not value > 0:
                raise InvalidLimit(field, f"must be > 0 or None, got {value!r}")
        self.name = name
        self.max_per_address = max_per_address
        self.max_addresses = max_addresses
        self._acquire_timeout = acquire_timeout
        self._connect_timeout = connect_timeout
        self._max_idle = max_idle
        self._max_lifetime = max_lifetime
        self._ssl = ssl
        self._read_timeout = read_timeout
        self._write_timeout = write_timeout
        self._limits = limits
        self._pools: dict[Address, Pool[Connection]] = {}
        self._closed = False

    def _pool(self, address: Address) -> Pool[Connection]:
        if self._closed:
            raise ClosedPoolError(f"connection pool {self.name!r} is closed")
        pool = self._pools.get(address)
        if pool is not None:
            return pool
        if len(self._pools) >= self.max_addresses:
            raise InvalidLimit(
                "max_addresses", f"pool {self.name!r} already holds {self.max_addresses} addresses"
            )

        async def factory() -> Connection:
            if isinstance(address, str):
                return await connect(
                    uds=address,
                    timeout=self._connect_timeout,
                    read_timeout=self._read_timeout,
                    write_timeout=self._write_timeout,
                    limits=self._limits,
                )
            return await connect(
                address[0],
                address[1],
                timeout=self._connect_timeout,
                ssl=self._ssl,
                read_timeout=self._read_timeout,
                write_timeout=self._write_timeout,
                limits=self._limits,
            )

        label = address if isinstance(address, str) else f"{address[0]}:{address[1]}"
        pool = Pool(
            factory,
            name=f"{self.name}:{label}",
            max_size=self.max_per_address,
            acquire_timeout=self._acquire_timeout,
            health_check=_healthy,
            health_check_after=0.0,  # the check is cheap: run it on every reuse
            max_idle=self._max_idle,
            max_lifetime=self._max_lifetime,
            close=_close,
        )
        self._pools[address] = pool
        return pool

    @staticmethod
    def _address(host: str | None, port: int | None, uds: str | None) -> Address:
        if uds is not None:
            if host is not None or port is not None:
                raise InvalidLimit("uds", "give either host and port, or uds")
            return uds
        if host is None or port is None:
            raise InvalidLimit("port", "give either host and port, or uds")
        return (host, port)

    def acquire(
        self,
        host: str | None = None,
        port: int | None = None,
        *,
        uds: str | None = None,
        timeout: float | None = None,
    ) -> _Acquire[Connection]:
        """``async with pool.acquire(host, port) as conn:`` — leaving the block through an
        exception or a cancellation closes the connection instead of reusing it."""
        return self._pool(self._address(host, port, uds)).acquire(timeout)

    async def get(
        self,
        host: str | None = None,
        port: int | None = None,
        *,
        uds: str | None = None,
        timeout: float | None = None,
    ) -> Connection:
        """Lease a connection that outlives a block; give it back with `put`."""
        return await self._pool(self._address(host, port, uds)).get(timeout)

    async def put(self, conn: Connection, *, discard: bool = False) -> None:
        """Give back a connection from `get` (``discard=True``: it is broken, close it)."""
        for pool in self._pools.values():
            if id(conn) in pool._in_use:
                await pool.put(conn, discard=discard)
                return
        raise InvalidLimit("conn", "this connection was not lent by this pool")

    def statistics(self) -> dict[Address, PoolStatistics]:
        """The core pool statistics of every address."""
        return {address: pool.statistics() for address, pool in self._pools.items()}

    @property
    def closed(self) -> bool:
        return self._closed

    async def aclose(self) -> None:
        """Close every idle connection; connections in use are closed when given back."""
        self._closed = True
        pools = list(self._pools.values())
        self._pools.clear()
        for pool in pools:
            await pool.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<ConnectionPool {self.name!r} addresses={len(self._pools)}>"
