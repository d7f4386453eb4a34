"""The ``flowcoro_db_query_observers`` hook: observers registered through a hermetic plugin host
see every SQL statement and Redis command (never values), their errors and cancellations; a
failing observer does not break queries; with none registered nothing is called."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import flowcoro.core.plugins as plugins_module
import flowcoro.db.plugin
from flowcoro.core import hookimpl
from flowcoro.core.plugins import Plugins, set_plugins
from flowcoro.db import Database
from flowcoro.db.errors import DBError
from flowcoro.db.observers import InfoCache, QueryInfo, load_observers, operation_of
from flowcoro.db.redis import Redis, RedisCommandError


class Recorder:
    def __init__(self) -> None:
        self.started: list[QueryInfo] = []
        self.finished: list[tuple[QueryInfo, BaseException | None]] = []

    def query_started(self, info: QueryInfo) -> QueryInfo:
        self.started.append(info)
        return info

    def query_finished(self, token: QueryInfo, error: BaseException | None) -> None:
        self.finished.append((token, error))

    def operations(self) -> list[str | None]:
        return [info.operation for info, _ in self.finished]


class Broken:
    def __init__(self, where: str) -> None:
        self.where = where
        self.calls = 0

    def query_started(self, info: QueryInfo) -> None:
        self.calls += 1
        if self.where == "start":
            raise RuntimeError("observer broke at start")

    def query_finished(self, token: Any, error: BaseException | None) -> None:
        self.calls += 1
        raise RuntimeError("observer broke at finish")


class _Provider:
    def __init__(self, observers: tuple[Any, ...]) -> None:
        self.observers = observers

    @hookimpl
    def flowcoro_db_query_observers(self) -> list[Any]:
        return list(self.observers)


@contextmanager
def observing(*observers: Any, db_plugin: bool = True) -> Iterator[Plugins]:
    """A hermetic plugin host with flowcoro-db's plugin and ``observers``, restored after."""
    previous = plugins_module._default
    host = Plugins(autoload=False)
    if db_plugin:
        host.register(flowcoro.db.plugin, name="db", distribution="flowcoro-db")
    if observers:
        host.register(_Provider(observers), name="observers", distribution="tests")
    set_plugins(host)
    try:
        yield host
    finally:
        set_plugins(previous)


def test_operation_of() -> None:
    assert operation_of("select 1") == "SELECT"
    assert operation_of("  (SELECT 1) UNION (SELECT 2)") == "SELECT"
    assert operation_of("\n insert into t values ($1)") == "INSERT"
    assert operation_of("WITH x AS (SELECT 1) SELECT * FROM x") == "WITH"
    assert operation_of("") is None
    assert operation_of("   ") is None
    assert operation_of("1") is None


def test_load_observers_without_the_db_plugin_is_empty() -> None:
    with observing(db_plugin=False):
        assert load_observers() == ()  # no specification, no implementation: no hook at all
    recorder = Recorder()
    with observing(recorder):
        assert load_observers() == (recorder,)


async def test_sqlite_statements_are_observed_without_values(tmp_path: Path) -> None:
    recorder = Recorder()
    with observing(recorder):
        db = Database(f"sqlite:///{tmp_path}/obs.db", name="obs")
    async with db:
        await db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, secret TEXT)")
        await db.execute("INSERT INTO t (id, secret) VALUES (?, ?)", 1, "hunter2")
        await db.executemany("INSERT INTO t (id, secret) VALUES (:id, :s)", [{"id": 2, "s": "x"}])
        assert await db.fetchval("SELECT secret FROM t WHERE id = ?", 1) == "hunter2"
        assert len(await db.fetch("select * from t")) == 2
        assert (await db.fetchrow("SELECT id FROM t WHERE id = ?", 2)) is not None
        async with db.transaction() as tx:
            await tx.execute("UPDATE t SET secret = ? WHERE id = ?", "s3cret", 1)
            async with tx.transaction():
                await tx.fetch("SELECT id FROM t")
        async with db.connection() as conn:
            await conn.fetchval("SELECT count(*) FROM t")
        with pytest.raises(DBError):
            await db.execute("INSERT INTO nope VALUES (?)", 1)
    assert recorder.operations() == [
        "CREATE",
        "INSERT",
        "INSERT",
        "SELECT",
        "SELECT",
        "SELECT",
        "BEGIN",
        "UPDATE",
        "SAVEPOINT",
        "SELECT",
        "RELEASE",
        "COMMIT",
        "SELECT",
        "INSERT",
    ]
    assert len(recorder.started) == len(recorder.finished)
    for info, _ in recorder.finished:
        assert info.system == "sqlite"
        assert info.namespace == f"{tmp_path}/obs.db"
        assert info.pool_name == "db:obs"
        assert info.server_address is None
        assert info.server_port is None
        assert info.statement is not None
        assert "hunter2" not in info.statement
        assert "s3cret" not in info.statement
    assert recorder.finished[1][0].statement == "INSERT INTO t (id, secret) VALUES (?, ?)"
    assert all(error is None for _, error in recorder.finished[:-1])
    assert isinstance(recorder.finished[-1][1], DBError)


async def test_postgres_statements_transaction_error_and_cancel(postgres_dsn: str) -> None:
    recorder = Recorder()
    table = f"t_{uuid.uuid4().hex[:16]}"
    with observing(recorder):
        db = Database(postgres_dsn, name="pg")
    async with db:
        try:
            await db.execute(f"CREATE TABLE {table} (id int, secret text)")
            await db.execute(
                f"INSERT INTO {table} VALUES (:id, :secret)", {"id": 1, "secret": "pw"}
            )
            async with db.transaction(isolation="serializable") as tx:
                assert await tx.fetchval(f"SELECT secret FROM {table} WHERE id = ?", 1) == "pw"
            with pytest.raises(DBError):
                await db.fetch("SELECT * FROM missing_table_xyz WHERE id = ?", 1)
            task = asyncio.ensure_future(db.execute("SELECT pg_sleep(10)"))
            while len(recorder.started) < 6:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            await db.execute(f"DROP TABLE IF EXISTS {table}")
    insert = recorder.finished[1][0]
    assert insert.statement == f"INSERT INTO {table} VALUES ($1, $2)"
    assert insert.system == "postgresql"
    assert insert.namespace == "test"
    assert insert.server_address == "127.0.0.1"
    assert insert.server_port == 5432
    assert insert.pool_name == "db:pg"
    assert recorder.operations()[:7] == [
        "CREATE",
        "INSERT",
        "BEGIN",
        "SELECT",
        "COMMIT",
        "SELECT",
        "SELECT",
    ]
    assert isinstance(recorder.finished[5][1], DBError)
    assert isinstance(recorder.finished[6][1], asyncio.CancelledError)


async def test_a_failing_observer_is_logged_once_and_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    at_start, at_finish, recorder = Broken("start"), Broken("finish"), Recorder()
    with observing(at_start, at_finish, recorder):
        db = Database(f"sqlite:///{tmp_path}/obs.db")
    with caplog.at_level(logging.ERROR, logger="flowcoro.db"):
        async with db:
            for _ in range(3):
                assert await db.fetchval("SELECT ?", 7) == 7
    assert at_start.calls == 3  # query_finished is not called after a failed query_started
    assert at_finish.calls == 6
    assert len(recorder.finished) == 3
    failures = [r for r in caplog.records if "query observer" in r.getMessage()]
    assert len(failures) <= 2  # once per observer class in the process, at most


async def test_without_observers_nothing_is_called(tmp_path: Path) -> None:
    with observing():
        db = Database(f"sqlite:///{tmp_path}/obs.db")
    assert db._observers == ()
    async with db:
        assert await db.fetchval("SELECT 1") == 1
        async with db.transaction() as tx:
            assert await tx.fetchval("SELECT 2") == 2


async def test_redis_commands_pipelines_and_transactions_are_observed(redis_url: str) -> None:
    recorder = Recorder()
    prefix = f"fct:{uuid.uuid4().hex[:12]}:"
    with observing(recorder):
        r = Redis.from_url(redis_url, name="cache")
    try:
        assert await r.set(prefix + "a", "secret-value") is True
        # auto-pipelined: concurrent commands each get their own observation
        values = await asyncio.gather(*(r.get(prefix + "a") for _ in range(5)))
        assert values == [b"secret-value"] * 5
        p = r.pipeline()
        p.set(prefix + "b", "1")
        p.incr(prefix + "b")
        assert await p.execute() == [True, 2]
        assert await r.pipeline().execute() == []  # nothing sent, nothing observed
        t = r.pipeline(transaction=True)
        t.incr(prefix + "b")
        assert await t.execute() == [3]
        async with r.watch(prefix + "b") as w:
            assert await w.get(prefix + "b") == b"3"
            m = w.multi()
            m.set(prefix + "b", "4")
            await m.execute()
        assert await r.blpop([prefix + "missing"], timeout=0.01) is None
        with pytest.raises(RedisCommandError):
            await r.execute("INCR", prefix + "a")  # not an integer
        blocked = asyncio.ensure_future(r.blpop([prefix + "never"], timeout=5))
        await asyncio.sleep(0.05)
        blocked.cancel()
        with pytest.raises(asyncio.CancelledError):
            await blocked
    finally:
        await r.delete(prefix + "a", prefix + "b")
        await r.aclose()
    ops = recorder.operations()
    assert ops[:7] == ["SET", "GET", "GET", "GET", "GET", "GET", "PIPELINE"]
    assert ops[7:13] == ["MULTI", "WATCH", "GET", "MULTI", "BLPOP", "INCR"]
    assert ops[13:] == ["BLPOP", "DEL"]
    for info, _ in recorder.finished:
        assert info.system == "redis"
        assert info.statement is None
        assert info.namespace == "0"
        assert info.server_address == "127.0.0.1"
        assert info.server_port == 6379
        assert info.pool_name == "cache"
    errors = [error for _, error in recorder.finished]
    assert isinstance(errors[12], RedisCommandError)
    assert isinstance(errors[13], asyncio.CancelledError)
    assert errors.count(None) == len(errors) - 2


async def test_redis_without_observers_and_with_a_failing_one(redis_url: str) -> None:
    with observing():
        plain = Redis.from_url(redis_url)
    assert plain._observers == ()
    broken = Broken("start")
    with observing(broken, Broken("finish")):
        r = Redis.from_url(redis_url)
    try:
        assert await plain.ping() == b"PONG"
        assert await r.ping() == b"PONG"
        p = r.pipeline()
        p.ping()
        assert await p.execute() == [b"PONG"]
    finally:
        await plain.aclose()
        await r.aclose()
    assert broken.calls == 2


async def test_a_single_failing_observer_is_ignored(tmp_path: Path) -> None:
    for where in ("start", "finish"):
        broken = Broken(where)
        with observing(broken):
            db = Database(f"sqlite:///{tmp_path}/obs.db")
        async with db:
            assert await db.fetchval("SELECT ?", 7) == 7
            with pytest.raises(DBError):
                await db.fetchval("SELECT * FROM nope")
        assert broken.calls == (2 if where == "start" else 4)


def test_info_cache_is_bounded() -> None:
    made: list[str] = []

    def make(key: str) -> QueryInfo:
        made.append(key)
        return QueryInfo("sqlite", operation_of(key), key, None, None, None, None)

    cache = InfoCache(make, limit=2)
    for key in ("SELECT 1", "SELECT 2", "SELECT 1", "SELECT 3", "SELECT 3"):
        assert cache.get(key).statement == key
    assert made == ["SELECT 1", "SELECT 2", "SELECT 3", "SELECT 3"]


class Stop(BaseException):
    pass


class Stopping(Recorder):
    def query_started(self, info: QueryInfo) -> QueryInfo:
        raise Stop


async def test_several_observers_see_errors_and_a_base_exception_propagates(
    tmp_path: Path,
) -> None:
    first, second = Recorder(), Recorder()
    with observing(first, second):
        db = Database(f"sqlite:///{tmp_path}/obs.db")
    async with db:
        with pytest.raises(DBError):
            await db.fetchval("SELECT * FROM nope")
    for recorder in (first, second):
        assert recorder.operations() == ["SELECT"]
        assert isinstance(recorder.finished[0][1], DBError)
    # A BaseException from query_started (KeyboardInterrupt, SystemExit) is not swallowed, and
    # the statement that never ran leaves no un-awaited coroutine behind (warnings are errors).
    for observers in ((Stopping(),), (Recorder(), Stopping())):
        with observing(*observers):
            db = Database(f"sqlite:///{tmp_path}/obs.db")
        async with db:
            with pytest.raises(Stop):
                await db.fetchval("SELECT 1")
