"""Explicit pipelines, MULTI/EXEC transactions, and WATCH on a dedicated connection."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Final

from flowcoro.core.deadline import effective_timeout
from flowcoro.core.errors import ClosedResourceError
from flowcoro.db.errors import DBConnectionError, DBError, DBTimeoutError
from flowcoro.db.redis._resp import ReplyError, pack_command
from flowcoro.db.redis.commands import Commands, Key, Transform
from flowcoro.db.redis.connection import RedisConnection, reply_error
from flowcoro.db.redis.errors import WatchError

if TYPE_CHECKING:
    from types import TracebackType

    from flowcoro.db.redis.client import Redis

__all__ = ["Pipeline", "Watch"]

_MULTI: Final = pack_command((b"MULTI",))
_EXEC: Final = pack_command((b"EXEC",))


class Pipeline(Commands):
    """Commands queued by the typed methods (each returns a future of its own reply) and sent
    together by `execute`, which returns every reply in order. An error reply fails only its own
    command: with ``raise_on_error=True`` (the default) the first error is raised after all
    replies arrived, otherwise errors are returned in place.

    With ``transaction=True`` the batch is wrapped in MULTI/EXEC: it runs atomically; an error at
    queue time (unknown command, wrong arity) aborts the whole transaction.
    """

    __slots__ = (
        "_client",
        "_conn",
        "_futures",
        "_loop",
        "_packed",
        "_transaction",
        "_transforms",
        "_watch",
    )

    def __init__(
        self, client: Redis, *, transaction: bool = False, conn: RedisConnection | None = None
    ) -> None:
        self._client = client
        self._transaction = transaction
        self._conn = conn
        self._packed: list[bytes] = []
        self._transforms: list[Transform] = []
        self._futures: list[asyncio.Future[Any]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watch: Watch | None = None  # set by Watch.multi: told when EXEC has answered

    def __len__(self) -> int:
        return len(self._packed)

    def _execute(self, args: tuple[Any, ...], transform: Transform = None) -> asyncio.Future[Any]:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        self._packed.append(pack_command(args))
        self._transforms.append(transform)
        fut = self._loop.create_future()
        self._futures.append(fut)
        return fut

    def _execute_blocking(
        self, args: tuple[Any, ...], server_timeout: float, transform: Transform = None
    ) -> asyncio.Future[Any]:
        if not self._transaction:
            raise ValueError(
                f"{args[0].decode()} would block the shared connection: call it on the client, "
                "or inside a transaction (where Redis does not block)"
            )
        return self._execute(args, transform)

    def execute_command(self, *args: Any) -> asyncio.Future[Any]:
        """Queue any command."""
        return self._execute(args)

    def reset(self) -> None:
        """Forget the queued commands (their futures are cancelled)."""
        for fut in self._futures:
            fut.cancel()
        self._packed, self._transforms, self._futures = [], [], []

    async def execute(self, *, raise_on_error: bool = True, observe: bool = True) -> list[Any]:
        if observe and self._client._observers and self._packed:
            # the whole batch is one operation for observers
            return await self._client._observed(
                self.execute(raise_on_error=raise_on_error, observe=False),
                b"MULTI" if self._transaction else b"PIPELINE",
            )
        packed, transforms, futures = self._packed, self._transforms, self._futures
        self._packed, self._transforms, self._futures = [], [], []
        if not packed:
            return []
        client = self._client
        # On the shared connection the stall watchdog enforces command_timeout; a dedicated
        # (WATCH) connection has none, so the pipeline bounds its own wait.
        timeout = effective_timeout(client._command_timeout if self._conn is not None else None)
        count = len(packed)
        if self._transaction:
            payload = b"".join((_MULTI, *packed, _EXEC))
            count += 2
        else:
            payload = b"".join(packed)
        conn = self._conn
        try:
            if conn is None:
                conn = client._conn
                if conn is None or conn.closed:
                    conn = await client._shared(timeout)
            batch = conn.submit_batch(payload, count)
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
        client._stats.commands += count
        try:
            async with asyncio.timeout(timeout):
                replies = await batch
        except BaseException as exc:
            for fut in futures:
                fut.cancel()
            if isinstance(exc, TimeoutError) and batch.cancelled():
                client._stats.timeouts += 1
                error = DBTimeoutError(
                    f"Redis pipeline of {len(packed)} commands timed out after {timeout:.3g}s"
                )
                if self._conn is not None:  # a dedicated connection now out of step
                    conn.discard(error)
                raise error from None
            raise
        if self._watch is not None:
            self._watch._executed = True  # EXEC answered: the server has dropped the watch
        if self._transaction:
            results = _transaction_results(replies, transforms)
        else:
            results = [_convert(r, t) for r, t in zip(replies, transforms, strict=True)]
        first_error: BaseException | None = None
        for fut, result in zip(futures, results, strict=True):
            if isinstance(result, BaseException):
                first_error = first_error or result
                client._stats.errors += 1
                if not fut.done():
                    fut.set_exception(result)
                    fut.exception()  # retrieved: nobody has to await the per-command future
            elif not fut.done():
                fut.set_result(result)
        if raise_on_error and first_error is not None:
            raise first_error
        return results

    async def __aenter__(self) -> Pipeline:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.reset()


def _transaction_results(replies: list[Any], transforms: list[Transform]) -> list[Any]:
    """Replies to MULTI, each queued command (QUEUED or an error) and EXEC."""
    exec_reply = replies[-1]
    if exec_reply.__class__ is ReplyError:
        error = reply_error(exec_reply, b"EXEC")
        cause = next((q for q in replies[1:-1] if q.__class__ is ReplyError), None)
        if cause is not None:  # EXECABORT: report the queued command that caused it
            raise reply_error(cause) from error
        raise error
    if exec_reply is None:
        raise WatchError("a watched key changed: the transaction did not run")
    return [_convert(item, t) for item, t in zip(exec_reply, transforms, strict=True)]


def _convert(item: Any, transform: Transform) -> Any:
    if item.__class__ is ReplyError:
        return reply_error(item)
    return item if transform is None else transform(item)


class Watch(Commands):
    """A WATCH transaction on a dedicated connection (see `Redis.watch`): commands run at once on
    that connection; `multi` starts the MULTI/EXEC pipeline that ends it."""

    __slots__ = ("_client", "_conn", "_done", "_executed", "_keys")

    def __init__(self, client: Redis, keys: tuple[Key, ...]) -> None:
        self._client = client
        self._keys = keys
        self._conn: RedisConnection | None = None
        self._done = False
        self._executed = False

    def _connection(self) -> RedisConnection:
        if self._conn is None or self._done:
            raise ClosedResourceError("use the watch inside its 'async with' block")
        return self._conn

    async def _execute(self, args: tuple[Any, ...], transform: Transform = None) -> Any:
        conn = self._connection()
        timeout = effective_timeout(self._client._command_timeout)
        return await self._client.run_on(conn, args, timeout, transform)

    async def _execute_blocking(
        self, args: tuple[Any, ...], server_timeout: float, transform: Transform = None
    ) -> Any:
        raise ValueError("blocking commands cannot run inside a WATCH transaction")

    def multi(self) -> Pipeline:
        """The MULTI/EXEC pipeline bound to this watch; ``execute`` raises `WatchError` when a
        watched key changed."""
        pipe = Pipeline(self._client, transaction=True, conn=self._connection())
        pipe._watch = self
        return pipe

    async def __aenter__(self) -> Watch:
        client = self._client
        self._conn = await client._acquire_dedicated(effective_timeout(client._command_timeout))
        try:
            await client.run_on(
                self._conn, (b"WATCH", *self._keys), effective_timeout(client._command_timeout)
            )
        except BaseException:
            self._release()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        conn = self._conn
        if conn is not None and not conn.closed:
            if self._executed and not conn.waiters:
                pass  # EXEC answered (even with WatchError): nothing is watched any more
            elif exc_type is None and not conn.waiters:
                # EXEC did not run: clear the watch before the connection is reused.
                try:
                    await self._client.run_on(conn, (b"UNWATCH",), effective_timeout(5.0))
                except DBError:
                    conn.discard(DBConnectionError("UNWATCH failed"))
            else:
                conn.discard(DBConnectionError("watch left abnormally; connection discarded"))
        self._release()

    def _release(self) -> None:
        conn, self._conn = self._conn, None
        self._done = True
        if conn is not None:
            self._client._release_dedicated(conn)
