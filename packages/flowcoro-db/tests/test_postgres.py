"""PostgreSQL-specific behaviour: types, isolation, deadlocks, kills, cancels, reconnects."""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import json
import socket
import uuid
from contextlib import suppress

import pytest

from flowcoro.core.deadline import deadline
from flowcoro.db import (
    AuthenticationError,
    Database,
    DBConnectionError,
    DeadlockError,
    IntegrityError,
    SerializationError,
)


async def test_types_round_trip(postgres_dsn: str, table: str) -> None:
    async with Database(postgres_dsn) as db:
        await db.execute(
            f"CREATE TABLE {table} (i BIGINT, d NUMERIC(20, 6), t TEXT, b BYTEA, "
            "ts TIMESTAMPTZ, day DATE, j JSONB, nothing INTEGER)"
        )
        try:
            when = dt.datetime(
                2024, 2, 29, 23, 59, 58, 123456, tzinfo=dt.timezone(dt.timedelta(hours=5))
            )
            values = (
                2**62,
                decimal.Decimal("12345.678901"),
                "zażółć ✓",
                b"\x00\xff\x10",
                when,
                dt.date(2000, 1, 1),
                json.dumps({"a": [1, 2]}),
                None,
            )
            await db.execute(f"INSERT INTO {table} VALUES (?, ?, ?, ?, ?, ?, ?, ?)", *values)
            row = await db.fetchrow(f"SELECT * FROM {table}")
            assert row is not None
            assert row.i == 2**62
            assert row.d == decimal.Decimal("12345.678901")
            assert row.t == "zażółć ✓"
            assert row.b == b"\x00\xff\x10"
            assert row.ts == when
            assert row.ts.tzinfo is not None
            assert row.day == dt.date(2000, 1, 1)
            assert json.loads(row.j) == {"a": [1, 2]}
            assert row.nothing is None
            # PostgreSQL's own operators survive translation: ?? is a literal ?, :: a cast
            assert await db.fetchval("SELECT '{\"a\": 1}'::jsonb ?? 'a'") is True
            assert await db.fetchval("SELECT $$ it's ? :x $$::text") == " it's ? :x "
        finally:
            await db.execute(f"DROP TABLE IF EXISTS {table}")


async def test_serializable_conflict_and_deadlock_retry(postgres_dsn: str, table: str) -> None:
    async with Database(postgres_dsn, max_size=4) as db:
        await db.execute(f"CREATE TABLE {table} (id INT PRIMARY KEY, v INT)")
        await db.execute(f"INSERT INTO {table} VALUES (1, 0), (2, 0)")
        try:
            # two transactions lock rows in opposite orders: one is chosen as deadlock victim
            gate = asyncio.Barrier(2)

            async def crossing(first: int, second: int) -> None:
                async with db.transaction() as tx:
                    await tx.execute(f"UPDATE {table} SET v = v + 1 WHERE id = ?", first)
                    await gate.wait()
                    await tx.execute(f"UPDATE {table} SET v = v + 1 WHERE id = ?", second)

            results = await asyncio.gather(crossing(1, 2), crossing(2, 1), return_exceptions=True)
            assert sum(isinstance(r, DeadlockError) for r in results) == 1

            # run_in_transaction retries the victim until it commits
            gate2 = asyncio.Barrier(2)
            calls = 0

            async def work(tx: object, first: int, second: int) -> None:
                nonlocal calls
                calls += 1
                await tx.execute(f"UPDATE {table} SET v = v + 1 WHERE id = ?", first)  # type: ignore[attr-defined]
                if calls <= 2:
                    await gate2.wait()
                await tx.execute(f"UPDATE {table} SET v = v + 1 WHERE id = ?", second)  # type: ignore[attr-defined]

            await asyncio.gather(
                db.run_in_transaction(lambda tx: work(tx, 1, 2)),
                db.run_in_transaction(lambda tx: work(tx, 2, 1)),
            )
            assert calls == 3
            assert db.statistics().retries >= 1

            # serializable: write skew between two transactions is refused
            with pytest.raises(SerializationError):  # noqa: PT012
                async with db.connection() as a, db.connection() as b:  # noqa: SIM117
                    async with b.transaction(isolation="serializable"):
                        await b.fetchval(f"SELECT sum(v) FROM {table}")
                        async with a.transaction(isolation="serializable"):
                            await a.fetchval(f"SELECT sum(v) FROM {table}")
                            await a.execute(f"UPDATE {table} SET v = v + 10 WHERE id = 1")
                        await b.execute(f"UPDATE {table} SET v = v + 10 WHERE id = 2")
        finally:
            await db.execute(f"DROP TABLE IF EXISTS {table}")


async def test_a_failed_commit_raises_and_the_connection_is_not_reused(
    postgres_dsn: str, table: str
) -> None:
    async with Database(postgres_dsn, max_size=1) as db:
        await db.execute(
            f"CREATE TABLE {table} (id INT, CONSTRAINT {table}_u UNIQUE (id) "
            "DEFERRABLE INITIALLY DEFERRED)"
        )
        try:
            # the unique check is deferred to COMMIT, which fails: nothing was committed
            with pytest.raises(IntegrityError, match="23505"):
                async with db.transaction() as tx:
                    await tx.execute(f"INSERT INTO {table} VALUES (1), (1)")
            assert db.statistics().pool.discarded == 1
            assert await db.fetchval(f"SELECT count(*) FROM {table}") == 0
            async with db.transaction() as tx:
                await tx.execute(f"INSERT INTO {table} VALUES (1)")
            assert await db.fetchval(f"SELECT count(*) FROM {table}") == 1
        finally:
            await db.execute(f"DROP TABLE IF EXISTS {table}")


async def _running(db: Database, needle: str) -> int:
    value = await db.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE ? AND pid <> pg_backend_pid()",
        f"%{needle}%",
    )
    return int(value)


async def test_deadline_cancels_the_query_on_the_server(postgres_dsn: str) -> None:
    async with Database(postgres_dsn, max_size=3) as db:
        with pytest.raises(TimeoutError):
            async with deadline(0.2):
                await db.fetchval("SELECT pg_sleep(30) /* flowcoro-deadline */")
        for _ in range(50):
            if await _running(db, "pg_sleep(30) /* flowcoro-deadline") == 0:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the query kept running on the server")
        # a caller cancelled mid-statement: asyncpg's cancel request is let through before the
        # connection is closed, so the statement stops on the server too
        task = asyncio.create_task(db.fetchval("SELECT pg_sleep(30) /* flowcoro-cancelled */"))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(50):
            if await _running(db, "pg_sleep(30) /* flowcoro-cancelled") == 0:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the cancelled query kept running on the server")


async def test_backend_killed_mid_query(postgres_dsn: str) -> None:
    app = f"flowcoro-{uuid.uuid4().hex[:8]}"
    async with (
        Database(postgres_dsn, max_size=2, server_settings={"application_name": app}) as db,
        Database(postgres_dsn) as admin,
    ):
        task = asyncio.create_task(db.fetchval("SELECT pg_sleep(10)"))
        await asyncio.sleep(0.2)
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = ? AND state = 'active'",
            app,
        )
        assert killed == 1
        with pytest.raises(DBConnectionError):
            await task
        # the pool replaced the dead connection
        assert await db.fetchval("SELECT 1") == 1
        assert db.statistics().pool.discarded >= 1

        # every pooled connection killed at once (a restart): idempotent calls go through
        await asyncio.gather(*(db.fetchval("SELECT pg_sleep(0.05)") for _ in range(2)))
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = ?",
            app,
        )
        await asyncio.sleep(0.1)
        values = await asyncio.gather(
            *(db.fetchval("SELECT ?::int", 3, idempotent=True) for _ in range(4))
        )
        assert values == [3, 3, 3, 3]


async def test_wrong_credentials_and_unreachable_host(
    postgres_dsn: str, unused_tcp_port: int
) -> None:
    bad = postgres_dsn.replace("postgres@", "no_such_user_flowcoro@", 1)
    db = Database(bad, min_size=0)
    with pytest.raises(AuthenticationError):
        await db.fetchval("SELECT 1")
    await db.aclose()

    db = Database(
        f"postgresql://postgres@127.0.0.1:{unused_tcp_port}/test",
        min_size=0,
        reconnect_window=0.2,
    )
    with pytest.raises(DBConnectionError, match=str(unused_tcp_port)):
        await db.fetchval("SELECT 1")
    assert db.statistics().connection_errors >= 1
    await db.aclose()


class Proxy:
    """A TCP proxy we control: closed at first, opened later (a database that restarts)."""

    def __init__(self, port: int, target: int) -> None:
        self.port = port
        self.target = target
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", self.port)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target)

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                w.close()
                with suppress(Exception):
                    await w.wait_closed()

        for t in (pipe(reader, up_w), pipe(up_r, writer)):
            task = asyncio.create_task(t)
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        for t in list(self.tasks):
            t.cancel()
        if self.tasks:
            await asyncio.wait(list(self.tasks))


async def test_reconnects_when_the_database_comes_back(
    postgres_dsn: str, unused_tcp_port: int
) -> None:
    proxy = Proxy(unused_tcp_port, 5432)
    url = f"postgresql://postgres@127.0.0.1:{unused_tcp_port}/test"
    db = Database(url, min_size=0, reconnect_window=3.0)
    try:
        later = asyncio.get_running_loop().call_later(
            0.4, lambda: asyncio.ensure_future(proxy.open())
        )
        assert await db.fetchval("SELECT 1") == 1  # retried with backoff until the port opened
        later.cancel()
        # the "restart": every connection dies
        await proxy.close()
        with pytest.raises(DBConnectionError):
            await db.fetchval("SELECT 1", idempotent=False)
        await proxy.open()
        assert await db.fetchval("SELECT 1", idempotent=True) == 1
    finally:
        await db.aclose()
        await proxy.close()


async def test_pgbouncer_mode_uses_no_named_statements(postgres_dsn: str) -> None:
    async with Database(postgres_dsn, pgbouncer=True) as db:
        for i in range(3):
            assert await db.fetchval("SELECT ?::int + 1", i) == i + 1
        n = await db.fetchval("SELECT count(*) FROM pg_prepared_statements")
        assert n == 0
    async with Database(postgres_dsn) as db:
        await db.fetchval("SELECT ?::int + 1", 1)
        assert await db.fetchval("SELECT count(*) FROM pg_prepared_statements") >= 1


def test_port_is_free(unused_tcp_port: int) -> None:
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", unused_tcp_port)) != 0
