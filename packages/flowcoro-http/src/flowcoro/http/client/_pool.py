"""The client's connections: one core `Pool` per origin, connecting (TCP/TLS) and checking
connections before reuse."""

from __future__ import annotations

import asyncio
import ssl
from contextvars import ContextVar

from flowcoro.core.deadline import effective_timeout
from flowcoro.core.errors import DeadlineExceeded
from flowcoro.core.errors import PoolTimeout as CorePoolTimeout
from flowcoro.core.pool import Pool, PoolStatistics
from flowcoro.http.client._config import Limits, Timeout
from flowcoro.http.client._connection import HTTPConnection
from flowcoro.http.client._url import Target
from flowcoro.http.client.errors import ClientError, ConnectError, ConnectTimeout, PoolTimeout

__all__ = ["OriginPools", "VerifyType"]

VerifyType = bool | str | ssl.SSLContext

# A request's own connect timeout, seen by the pool's factory (which takes no arguments).
_connect_timeout: ContextVar[float | None] = ContextVar("flowcoro_http_connect_timeout")


class _FactoryError(Exception):
    """Carries a connect error through the core Pool (which turns TimeoutErrors into its own)."""

    def __init__(self, error: ClientError) -> None:
        super().__init__(str(error))
        self.error = error


def _close_connection(conn: HTTPConnection) -> None:
    conn.close()


class OriginPools:
    """Connection pools keyed by origin (scheme, host, port), and every connection they opened
    (so closing the client closes even connections held by forgotten streamed responses)."""

    __slots__ = (
        "_cert",
        "_closed",
        "_conns",
        "_default_connect",
        "_limits",
        "_ssl",
        "_verify",
        "pools",
    )

    def __init__(
        self,
        limits: Limits,
        timeout: Timeout,
        verify: VerifyType,
        cert: str | tuple[str, str] | None,
    ) -> None:
        self._limits = limits
        self._default_connect = timeout.connect
        self._verify = verify
        self._cert = cert
        self._ssl: ssl.SSLContext | None = None
        self._conns: set[HTTPConnection] = set()
        self._closed = False
        self.pools: dict[tuple[str, str, int], Pool[HTTPConnection]] = {}

    def statistics(self) -> dict[str, PoolStatistics]:
        return {f"{s}://{h}:{p}": pool.statistics() for (s, h, p), pool in self.pools.items()}

    async def aclose(self) -> None:
        self._closed = True
        pools = list(self.pools.values())
        self.pools.clear()
        for pool in pools:
            await pool.aclose()
        for conn in list(self._conns):
            conn.close()
        if self._conns:
            await asyncio.sleep(0)  # let the transports call connection_lost

    def new_pool(self, target: Target) -> Pool[HTTPConnection]:
        scheme, host, port = target.origin
        limits = self._limits

        async def connect() -> HTTPConnection:
            try:
                conn = await self._connect(scheme, host, port)
            except ClientError as exc:
                raise _FactoryError(exc) from exc
            conn.pool = pool
            return conn

        pool: Pool[HTTPConnection] = Pool(
            connect,
            name=f"http-client {scheme}://{target.host_header}",
            max_size=limits.max_connections_per_host,
            acquire_timeout=None,
            max_idle=limits.keepalive_expiry,
            close=_close_connection,
            discard_on_error=True,
        )
        self.pools[target.origin] = pool
        return pool

    async def acquire(
        self,
        pool: Pool[HTTPConnection],
        method: str,
        target: Target,
        timeouts: Timeout,
        fresh: bool = False,
    ) -> HTTPConnection:
        """A usable connection. Each idle one is checked before reuse (the server may have
        closed it meanwhile). ``fresh`` (the retry) skips kept-alive ones, which are likely
        stale too when the server just closed one of them (e.g. it restarted)."""
        skips = pool.max_size if fresh else 0
        token = None
        if timeouts.connect != self._default_connect:
            token = _connect_timeout.set(timeouts.connect)
        try:
            while True:
                try:
                    conn = await pool.get(timeouts.pool)
                except _FactoryError as exc:
                    error = exc.error
                    raise type(error)(error.reason, method=method, url=target.url) from (
                        error.__cause__
                    )
                except (CorePoolTimeout, DeadlineExceeded) as exc:
                    raise PoolTimeout(
                        f"no connection to {target.scheme}://{target.host_header} within the "
                        f"pool timeout or deadline (max_connections_per_host="
                        f"{self._limits.max_connections_per_host})",
                        method=method,
                        url=target.url,
                    ) from exc
                if conn.usable():
                    if skips and conn.requests > 0:
                        skips -= 1
                        pool.put_nowait(conn, discard=True)
                        continue
                    return conn
                pool.put_nowait(conn, discard=True)
        finally:
            if token is not None:
                _connect_timeout.reset(token)

    async def _connect(self, scheme: str, host: str, port: int) -> HTTPConnection:
        loop = asyncio.get_running_loop()
        url = f"{scheme}://{host}:{port}"
        timeout = _connect_timeout.get(self._default_connect)
        try:
            limit = effective_timeout(timeout)
        except DeadlineExceeded as exc:
            raise ConnectTimeout(
                "the caller's deadline expired before connecting", url=url
            ) from exc
        ssl_context = self.ssl_context() if scheme == "https" else None
        max_header = self._limits.max_header_size
        try:
            async with asyncio.timeout(limit):
                _, conn = await loop.create_connection(
                    lambda: HTTPConnection(loop, max_header),
                    host,
                    port,
                    ssl=ssl_context,
                    server_hostname=host if ssl_context is not None else None,
                )
        except TimeoutError as exc:
            raise ConnectTimeout(f"connecting took longer than {limit:g}s", url=url) from exc
        except ssl.SSLError as exc:
            raise ConnectError(f"TLS handshake failed: {exc}", url=url) from exc
        except OSError as exc:
            raise ConnectError(f"cannot connect: {exc}", url=url) from exc
        if self._closed:
            conn.close()
            raise ConnectError("the client was closed while connecting", url=url)
        self._conns.add(conn)
        conn.on_lost = self._conns.discard
        return conn

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context, made on first use (loading the system CAs takes a while)."""
        context = self._ssl
        if context is None:
            verify = self._verify
            if isinstance(verify, ssl.SSLContext):
                context = verify
            else:
                try:
                    context = ssl.create_default_context(
                        cafile=verify if isinstance(verify, str) else None
                    )
                except (OSError, ssl.SSLError) as exc:
                    raise ValueError(f"Client: 'verify' {verify!r}: cannot load: {exc}") from exc
                if verify is False:
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                context.set_alpn_protocols(["http/1.1"])
            if self._cert is not None:
                cert = (self._cert,) if isinstance(self._cert, str) else self._cert
                try:
                    context.load_cert_chain(*cert)
                except (OSError, ssl.SSLError) as exc:
                    raise ValueError(f"Client: 'cert' {self._cert!r}: cannot load: {exc}") from exc
            self._ssl = context
        return context
