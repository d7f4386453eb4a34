"""SQLite-specific behaviour: types as text, :memory:, interrupts, bad paths."""

from __future__ import annotations

import datetime as dt
import decimal
from pathlib import Path

import pytest

from flowcoro.db import Database, DBConnectionError, DBTimeoutError, TransactionError

FOREVER = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"


async def test_types_round_trip(tmp_path: Path) -> None:
    async with Database(f"sqlite:///{tmp_path}/types.db") as db:
        await db.execute(
            "CREATE TABLE t (i INTEGER, d TEXT, t TEXT, b BLOB, ts TEXT, j TEXT, n INTEGER)"
        )
        when = dt.datetime(2024, 2, 29, 23, 59, 58, tzinfo=dt.UTC)
        await db.execute(
            "INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?)",
            2**62,
            decimal.Decimal("1.10"),
            "ż",
            b"\x00\xff",
            when,
            '{"a": 1}',
            None,
        )
        row = await db.fetchrow("SELECT * FROM t")
        assert row is not None
        assert row.i == 2**62
        assert decimal.Decimal(row.d) == decimal.Decimal("1.10")
        assert row.t == "ż"
        assert row.b == b"\x00\xff"
        assert dt.datetime.fromisoformat(row.ts) == when
        assert row.j == '{"a": 1}'
        assert row.n is None
        assert "i" in row
        assert len(row) == 7
        with pytest.raises(AttributeError, match="nope"):
            _ = row.nope
        assert row == {
            "i": 2**62,
            "d": "1.10",
            "t": "ż",
            "b": b"\x00\xff",
            "ts": when.isoformat(),
            "j": '{"a": 1}',
            "n": None,
        }
        assert "Row(i=" in repr(row)


async def test_memory_database_is_one_connection() -> None:
    async with Database("sqlite://:memory:") as db:
        await db.execute("CREATE TABLE m (x INTEGER)")
        await db.execute("INSERT INTO m VALUES (?)", 1)
        assert await db.fetchval("SELECT count(*) FROM m") == 1
        assert db.statistics().pool.max_size == 1


async def test_timeout_interrupts_and_bad_path(tmp_path: Path) -> None:
    async with Database(f"sqlite:///{tmp_path}/slow.db") as db:
        with pytest.raises(DBTimeoutError):
            await db.fetchval(
                FOREVER,
                timeout=0.1,
            )
        with pytest.raises(DBTimeoutError):
            await db.execute(
                FOREVER,
                timeout=0.1,
            )
        assert await db.fetchval("SELECT 1") == 1
    db = Database(f"sqlite:///{tmp_path}/missing/dir/x.db", min_size=0, reconnect_window=0.1)
    with pytest.raises(DBConnectionError):
        await db.fetchval("SELECT 1")
    await db.aclose()


async def test_locked_database_is_a_transaction_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/locked.db"
    async with Database(url, timeout=0.05) as a, Database(url, timeout=0.05, min_size=0) as b:
        await a.execute("CREATE TABLE l (x INTEGER)")
        async with a.transaction() as tx:
            await tx.execute("INSERT INTO l VALUES (1)")
            with pytest.raises(TransactionError):
                async with b.transaction():
                    pass
