"""MariaDB/MySQL-specific behaviour: types, deadlocks, KILL, KILL QUERY on deadline."""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import json

import pytest

from flowcoro.core.deadline import deadline
from flowcoro.db import AuthenticationError, Database, DBConnectionError, DeadlockError


async def test_types_round_trip(mariadb_dsn: str, table: str) -> None:
    async with Database(mariadb_dsn) as db:
        await db.execute(
            f"CREATE TABLE {table} (i BIGINT, d DECIMAL(20, 6), t TEXT, b BLOB, "
            "ts DATETIME(6), day DATE, j JSON, nothing INT)"
        )
        try:
            when = dt.datetime(
                2024, 2, 29, 23, 59, 58, 123456, tzinfo=dt.timezone(dt.timedelta(hours=5))
            )
            values = (
                2**62,
                decimal.Decimal("12345.678901"),
                "zażółć ✓ 100%",
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
            assert row.t == "zażółć ✓ 100%"
            assert row.b == b"\x00\xff\x10"
            # stored as UTC; MySQL has no zone-carrying type, so it comes back naive UTC
            assert row.ts.replace(tzinfo=dt.UTC) == when
            assert row.day == dt.date(2000, 1, 1)
            assert json.loads(row.j) == {"a": [1, 2]}
            assert row.nothing is None
            assert await db.fetchval("SELECT 'a\\'?%' /* ? */ # :x") == "a'?%"
        finally:
            await db.execute(f"DROP TABLE IF EXISTS {table}")


async def test_deadlock_is_mapped_and_retried(mariadb_dsn: str, table: str) -> None:
    async with Database(mariadb_dsn, max_size=4) as db:
        await db.execute(f"CREATE TABLE {table} (id INT PRIMARY KEY, v INT) ENGINE=InnoDB")
        await db.execute(f"INSERT INTO {table} VALUES (1, 0), (2, 0)")
        try:
            gate = asyncio.Barrier(2)
            calls = 0

            async def work(tx: object, first: int, second: int) -> None:
                nonlocal calls
                calls += 1
                await tx.execute(f"UPDATE {table} SET v = v + 1 WHERE id = ?", first)  # type: ignore[attr-defined]
                if calls <= 2:
                    await gate.wait()
                await tx.execute(f"UPDATE {table} SET v = v + 1 WHERE id = ?", second)  # type: ignore[attr-defined]

            await asyncio.gather(
                db.run_in_transaction(lambda tx: work(tx, 1, 2), retries=0),
                db.run_in_transaction(lambda tx: work(tx, 2, 1), retries=0),
                return_exceptions=True,
            )
            calls = 0
            gate = asyncio.Barrier(2)
            results = await asyncio.gather(
                db.run_in_transaction(lambda tx: work(tx, 1, 2), retries=0),
                db.run_in_transaction(lambda tx: work(tx, 2, 1), retries=0),
                return_exceptions=True,
            )
            assert sum(isinstance(r, DeadlockError) for r in results) == 1
            calls = 0
            gate = asyncio.Barrier(2)
            await asyncio.gather(
                db.run_in_transaction(lambda tx: work(tx, 1, 2)),
                db.run_in_transaction(lambda tx: work(tx, 2, 1)),
            )
            assert calls == 3
            async with db.transaction(isolation="serializable", readonly=True) as tx:
                assert await tx.fetchval(f"SELECT count(*) FROM {table}") == 2
        finally:
            await db.execute(f"DROP TABLE IF EXISTS {table}")


async def _sleeping(db: Database, needle: str) -> int:
    value = await db.fetchval(
        "SELECT count(*) FROM information_schema.processlist"
        " WHERE info LIKE ? AND id <> CONNECTION_ID()",
        f"%{needle}%",
    )
    return int(value)


async def test_deadline_sends_kill_query(mariadb_dsn: str) -> None:
    async with Database(mariadb_dsn, max_size=3) as db:
        with pytest.raises(TimeoutError):
            async with deadline(0.2):
                await db.fetchval("SELECT SLEEP(30) /* flowcoro-deadline */")
        for _ in range(50):
            if await _sleeping(db, "SLEEP(30) /* flowcoro-deadline") == 0:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the query kept running on the server")
        # also when the statement's own timeout fires, and when the caller is cancelled
        with pytest.raises(TimeoutError):
            await db.fetchval("SELECT SLEEP(30) /* flowcoro-timeout */", timeout=0.2)
        task = asyncio.create_task(db.fetchval("SELECT SLEEP(30) /* flowcoro-cancel */"))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(50):
            if await _sleeping(db, "SLEEP(30) /* flowcoro-") == 0:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the query kept running on the server")


async def test_connection_killed_mid_query(mariadb_dsn: str) -> None:
    async with Database(mariadb_dsn, max_size=2) as db, Database(mariadb_dsn) as admin:
        task = asyncio.create_task(db.fetchval("SELECT SLEEP(10) /* flowcoro-kill */"))
        await asyncio.sleep(0.2)
        ids = await admin.fetch(
            "SELECT id FROM information_schema.processlist WHERE info LIKE '%flowcoro-kill */'"
            " AND id <> CONNECTION_ID()"
        )
        assert len(ids) == 1
        await admin.execute(f"KILL {int(ids[0].id)}")
        with pytest.raises(DBConnectionError):
            await task
        assert await db.fetchval("SELECT 1") == 1
        # kill every pooled connection while idle: the health check or a retry replaces them
        ids = await db.fetch("SELECT CONNECTION_ID() AS id")
        await admin.execute(f"KILL {int(ids[0].id)}")
        await asyncio.sleep(0.1)
        assert await db.fetchval("SELECT 2", idempotent=True) == 2


async def test_wrong_credentials_and_unreachable_host(
    mariadb_dsn: str, unused_tcp_port: int
) -> None:
    db = Database(mariadb_dsn.replace("root@", "no_such_user_flowcoro:pw@", 1), min_size=0)
    with pytest.raises(AuthenticationError):
        await db.fetchval("SELECT 1")
    await db.aclose()
    db = Database(
        f"mariadb://root@127.0.0.1:{unused_tcp_port}/test", min_size=0, reconnect_window=0.2
    )
    with pytest.raises(DBConnectionError, match=str(unused_tcp_port)):
        await db.fetchval("SELECT 1")
    await db.aclose()
