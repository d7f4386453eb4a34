"""The same behaviour on PostgreSQL, MariaDB and SQLite (parametrized by ``sql_url``)."""

from __future__ import annotations

import asyncio
import random

import pytest

from flowcoro.core.deadline import deadline
from flowcoro.core.errors import BusyResourceError, ClosedResourceError
from flowcoro.db import (
    Database,
    DBConnectionError,
    DBPoolTimeout,
    DBTimeoutError,
    IntegrityError,
    QueryError,
    Row,
    SyntaxError,
    TransactionError,
    UniqueViolationError,
)


def slow_sql(url: str, seconds: float) -> str:
    """A statement that runs ``seconds`` (SQLite: forever, until interrupted)."""
    if url.startswith("postgres"):
        return f"SELECT pg_sleep({seconds})"
    if url.startswith(("mysql", "mariadb")):
        return f"SELECT SLEEP({seconds})"
    return "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"


async def make_table(db: Database, table: str) -> None:
    await db.execute(f"DROP TABLE IF EXISTS {table}")
    await db.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, name VARCHAR(100), n INTEGER)")


async def test_crud_and_placeholders(sql_url: str, table: str) -> None:
    async with Database(sql_url) as db:
        await make_table(db, table)
        try:
            assert await db.execute(f"INSERT INTO {table} VALUES (?, ?, ?)", 1, "a", 10) == 1
            await db.execute(
                f"INSERT INTO {table} (id, name, n) VALUES (:id, :name, :n)",
                {"id": 2, "name": "it's 100% ok ?", "n": 20},
            )
            await db.executemany(
                f"INSERT INTO {table} VALUES (?, ?, ?)", [(3, "c", 30), (4, "d", 40)]
            )
            await db.executemany(
                f"INSERT INTO {table} VALUES (:id, :name, :n)",
                [{"id": 5, "name": "e", "n": 50}],
            )
            rows = await db.fetch(f"SELECT id, name, n FROM {table} ORDER BY id")
            assert [r.id for r in rows] == [1, 2, 3, 4, 5]
            assert rows[1]["name"] == "it's 100% ok ?"
            assert rows[0][2] == 10
            assert isinstance(rows[0], Row)
            assert dict(rows[0]) == {"id": 1, "name": "a", "n": 10}
            # literals and comments keep their '?', ':x' and '%'
            value = await db.fetchval("SELECT 'a?b:c%d' -- a ? comment :x\n /* ? :y */ ")
            assert value == "a?b:c%d"
            row = await db.fetchrow(f"SELECT name, n FROM {table} WHERE id = ?", 4)
            assert row is not None
            assert row.name == "d"
            assert row["n"] == 40
            assert await db.fetchrow(f"SELECT name FROM {table} WHERE id = ?", 99) is None
            assert await db.fetchval(f"SELECT n FROM {table} WHERE id = ?", 99) is None
            assert await db.fetchval(f"SELECT id, n FROM {table} WHERE id = ?", 3, column=1) == 30
            assert await db.fetch(f"SELECT id FROM {table} WHERE id > ?", 100) == []
            changed = await db.execute(f"UPDATE {table} SET n = n + 1 WHERE id <= ?", 2)
            assert changed == 2
            with pytest.raises(QueryError, match="placeholder"):
                await db.fetch(f"SELECT id FROM {table} WHERE id = ?")
            with pytest.raises(QueryError, match="mapping"):
                await db.fetch(f"SELECT id FROM {table} WHERE id = :id", 1)
            with pytest.raises(QueryError, match=":id"):
                await db.fetch(f"SELECT id FROM {table} WHERE id = :id", {"x": 1})
        finally:
            await db.execute(f"DROP TABLE IF EXISTS {table}")


async def test_errors_are_mapped(sql_url: str, table: str) -> None:
    async with Database(sql_url) as db:
        await make_table(db, table)
        try:
            await db.execute(f"INSERT INTO {table} VALUES (1, 'a', 1)")
            with pytest.raises(UniqueViolationError) as info:
                await db.execute(f"INSERT INTO {table} VALUES (1, 'b', 2)")
            assert info.value.__cause__ is not None
            with pytest.raises(SyntaxError):
                await db.execute("SELEKT 1")
            with pytest.raises(QueryError):
                await db.fetch("SELECT * FROM no_such_table_flowcoro")
            await db.execute(
                f"CREATE TABLE {table}_nn (id INTEGER PRIMARY KEY, v INTEGER NOT NULL)"
            )
            with pytest.raises(IntegrityError):
                await db.execute(f"INSERT INTO {table}_nn (id, v) VALUES (1, NULL)")
            # the connection is still fine after errors
            assert await db.fetchval("SELECT 1") == 1
            stats = db.statistics()
            assert stats.errors >= 4
            assert stats.pool.discarded == 0
        finally:
            await db.execute(f"DROP TABLE IF EXISTS {table}_nn")
            await db.execute(f"DROP TABLE IF EXISTS {table}")


async def test_transactions_and_savepoints(sql_url: str, table: str) -> None:
    async with Database(sql_url, max_size=2) as db:
        await make_table(db, table)
        try:
            async with db.transaction() as tx:
                await tx.execute(f"INSERT INTO {table} VALUES (1, 'a', 1)")
                assert tx.in_transaction
                async with tx.transaction():  # savepoint, released
                    await tx.execute(f"INSERT INTO {table} VALUES (2, 'b', 2)")
                with pytest.raises(RuntimeError):  # noqa: PT012
                    async with tx.transaction():  # savepoint, rolled back
                        await tx.execute(f"INSERT INTO {table} VALUES (3, 'c', 3)")
                        raise RuntimeError("undo the savepoint")
                assert await tx.fetchval(f"SELECT count(*) FROM {table}") == 2
            assert await db.fetchval(f"SELECT count(*) FROM {table}") == 2

            with pytest.raises(ValueError, match="boom"):  # noqa: PT012
                async with db.transaction() as tx:
                    await tx.execute(f"INSERT INTO {table} VALUES (4, 'd', 4)")
                    raise ValueError("boom")
            assert await db.fetchval(f"SELECT count(*) FROM {table} WHERE id = 4") == 0

            # a unique violation inside: the whole transaction rolls back
            with pytest.raises(UniqueViolationError):  # noqa: PT012
                async with db.transaction() as tx:
                    await tx.execute(f"INSERT INTO {table} VALUES (5, 'e', 5)")
                    await tx.execute(f"INSERT INTO {table} VALUES (1, 'dup', 0)")
            assert await db.fetchval(f"SELECT count(*) FROM {table} WHERE id = 5") == 0

            # read-only transactions, isolation levels
            async with db.transaction(readonly=True, isolation="repeatable read") as tx:
                assert await tx.fetchval(f"SELECT count(*) FROM {table}") == 2
            with pytest.raises(ValueError, match="isolation"):
                db.transaction(isolation="chaos")

            # cancelled while idle inside the block: rolled back, connection reused
            started = asyncio.Event()

            async def body() -> None:
                async with db.transaction() as tx:
                    await tx.execute(f"INSERT INTO {table} VALUES (6, 'f', 6)")
                    started.set()
                    await asyncio.sleep(10)

            task = asyncio.create_task(body())
            await started.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await db.fetchval(f"SELECT count(*) FROM {table} WHERE id = 6") == 0

            # cancelled mid-statement: the connection is closed, not reused
            discarded = db.statistics().pool.discarded

            async def slow() -> None:
                async with db.transaction() as tx:
                    await tx.execute(f"INSERT INTO {table} VALUES (7, 'g', 7)")
                    await tx.fetchval(slow_sql(sql_url, 5))

            task = asyncio.create_task(slow())
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert db.statistics().pool.discarded == discarded + 1
            assert await db.fetchval(f"SELECT count(*) FROM {table} WHERE id = 7") == 0
        finally:
            await db.execute(f"DROP TABLE IF EXISTS {table}")


async def test_run_in_transaction_retries(sql_url: str, table: str) -> None:
    async with Database(sql_url) as db:
        attempts = 0

        async def work(tx: object) -> int:
            nonlocal attempts
            attempts += 1
            if attempts < 3:
                raise TransactionError("simulated serialization failure")
            return await tx.fetchval("SELECT 42")  # type: ignore[attr-defined, no-any-return]

        assert await db.run_in_transaction(work) == 42
        assert attempts == 3
        assert db.statistics().retries == 2

        async def always(tx: object) -> None:
            raise TransactionError("never works")

        with pytest.raises(TransactionError):
            await db.run_in_transaction(always, retries=1)


async def test_connection_lease(sql_url: str) -> None:
    async with Database(sql_url, max_size=1) as db:
        async with db.connection() as conn:
            assert await conn.fetchval("SELECT ?", "7") == "7"
            assert conn.raw is not None
            assert not conn.in_transaction
            # one statement at a time on a held connection
            first = asyncio.create_task(conn.fetchval(slow_sql(sql_url, 3), timeout=0.3))
            await asyncio.sleep(0.05)
            with pytest.raises(BusyResourceError):
                await conn.fetchval("SELECT 1")
            with pytest.raises(DBTimeoutError):
                await first
            with pytest.raises(DBConnectionError, match="broken"):
                await conn.fetchval("SELECT 1")
        with pytest.raises(ClosedResourceError):
            await conn.fetchval("SELECT 1")
        # after the broken statement the pool made a new connection
        assert await db.fetchval("SELECT 1") == 1


async def test_iterate_streams_rows(sql_url: str, table: str) -> None:
    async with Database(sql_url, max_size=2) as db:
        await make_table(db, table)
        try:
            await db.executemany(
                f"INSERT INTO {table} VALUES (?, ?, ?)", [(i, f"n{i}", i) for i in range(250)]
            )
            seen = [
                row.id async for row in db.iterate(f"SELECT id FROM {table} ORDER BY id", batch=32)
            ]
            assert seen == list(range(250))
            got = [
                r["n"] async for r in db.iterate(f"SELECT n FROM {table} WHERE n < ? ORDER BY n", 3)
            ]
            assert got == [0, 1, 2]
            # leaving early gives the connection up (closed: it was mid-stream)
            rows = db.iterate(f"SELECT id FROM {table} ORDER BY id", batch=10)
            async for row in rows:
                if row.id == 5:
                    break
            await rows.aclose()
            assert db.statistics().pool.in_use == 0
            with pytest.raises(ValueError, match="batch"):
                async for _ in db.iterate("SELECT 1", batch=0):
                    pass
            with pytest.raises(QueryError):
                async for _ in db.iterate("SELECT * FROM no_such_table_flowcoro"):
                    pass
            assert await db.fetchval("SELECT 1") == 1
        finally:
            await db.execute(f"DROP TABLE IF EXISTS {table}")


async def test_deadline_cancels_on_server(sql_url: str) -> None:
    async with Database(sql_url, max_size=2) as db:
        started = asyncio.get_running_loop().time()
        # our timer fires 5 ms before the block's, so this is normally a DBTimeoutError; under
        # heavy load the block's own DeadlineExceeded can still win (both are TimeoutError)
        with pytest.raises(TimeoutError):
            async with deadline(0.3):
                await db.fetchval(slow_sql(sql_url, 5))
        assert asyncio.get_running_loop().time() - started < 2.0
        with pytest.raises(DBTimeoutError):
            await db.fetchval(slow_sql(sql_url, 5), timeout=0.2)
        # an expired deadline fails before touching the database
        with deadline(0.001):
            await asyncio.sleep(0.01)
            with pytest.raises(DBTimeoutError):
                await db.fetchval("SELECT 1")
        assert db.statistics().timeouts >= 2
        assert await db.fetchval("SELECT 1") == 1


async def test_pool_exhaustion_times_out(sql_url: str) -> None:
    async with Database(sql_url, max_size=1, acquire_timeout=0.2) as db:
        async with db.connection():
            with pytest.raises(DBPoolTimeout, match="max_size=1"):
                await db.fetchval("SELECT 1")
            # a deadline shorter than the acquire timeout bounds the wait too
            with pytest.raises(TimeoutError):
                async with deadline(0.05):
                    await db.fetchval("SELECT 1")
        assert await db.fetchval("SELECT 1") == 1
        stats = db.statistics()
        assert stats.pool.timeouts >= 1


async def test_cancellation_storm_never_mixes_results(sql_url: str) -> None:
    """Cancel tasks at random points; every completed query must see its own answer."""
    async with Database(sql_url, max_size=4) as db:
        rng = random.Random(1234)
        wrong = 0

        async def ask(i: int) -> None:
            nonlocal wrong
            for _ in range(5):
                value = await db.fetchval("SELECT ?", str(i))
                if value != str(i):
                    wrong += 1

        for _ in range(4):
            tasks = [asyncio.create_task(ask(i)) for i in range(40)]
            await asyncio.sleep(rng.random() * 0.01)
            for t in tasks:
                if rng.random() < 0.5:
                    t.cancel()
                await asyncio.sleep(0)
            await asyncio.gather(*tasks, return_exceptions=True)
        assert wrong == 0
        stats = db.statistics()
        assert stats.pool.in_use == 0
        for i in range(20):
            assert await db.fetchval("SELECT ?", str(i)) == str(i)


async def test_steady_load_reuses_connections(sql_url: str) -> None:
    async with Database(sql_url, min_size=2, max_size=4) as db:

        async def worker() -> None:
            for _ in range(50):
                await db.fetchval("SELECT 1")

        await asyncio.gather(*(worker() for _ in range(8)))
        stats = db.statistics()
        assert stats.pool.reuse_ratio > 0.95
        assert stats.statements >= 400
        assert stats.pool.size <= 4
        await db.health_check()


async def test_connection_limits(sql_url: str) -> None:
    # max_queries retires a connection; health check after idleness runs a ping
    async with Database(sql_url, max_size=1, max_queries=3, health_check_after=0.05) as db:
        for _ in range(7):
            assert await db.fetchval("SELECT 1") == 1
        stats = db.statistics()
        assert stats.pool.created >= 3
        await asyncio.sleep(0.1)
        assert await db.fetchval("SELECT 1") == 1
    # max_lifetime retires a connection however busy it is
    async with Database(sql_url, max_size=1, max_lifetime=0.1) as db:
        assert await db.fetchval("SELECT 1") == 1
        created = db.statistics().pool.created
        await asyncio.sleep(0.15)
        assert await db.fetchval("SELECT 1") == 1
        assert db.statistics().pool.created > created


async def test_transaction_left_open_is_not_reused(sql_url: str) -> None:
    async with Database(sql_url, max_size=1) as db:
        begin = "START TRANSACTION" if sql_url.startswith("mysql") else "BEGIN"
        async with db.connection() as conn:
            await conn.execute(begin)
        assert db.statistics().pool.discarded == 1
        await db.execute(begin)  # a bare BEGIN through the pool: discarded as well
        assert db.statistics().pool.discarded == 2
        assert await db.fetchval("SELECT 1") == 1


async def test_closed_database_refuses(sql_url: str) -> None:
    db = Database(sql_url)
    await db.connect()
    await db.aclose()
    with pytest.raises((ClosedResourceError, DBConnectionError)):
        await db.fetchval("SELECT 1")
