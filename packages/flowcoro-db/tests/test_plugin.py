"""Drivers as plugins (a third-party driver defined here), hooks, options, the component, and
the migration runner with its CLI command."""

from __future__ import annotations

import argparse
from collections.abc import AsyncGenerator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from flowcoro.core import hookimpl
from flowcoro.core.abc import Component
from flowcoro.db import Database, Driver, DriverConnection, QueryError, Row
from flowcoro.db import plugin as db_plugin
from flowcoro.db._registry import driver_for, drivers, plugin_manager
from flowcoro.db._sql import SQLITE
from flowcoro.db.migrate import DBCommand, MigrationError, discover, migrate, status


class EchoConnection(DriverConnection):
    """Answers every query with one row holding the statement and its arguments."""

    __slots__ = ("closed",)

    def __init__(self) -> None:
        super().__init__()
        self.closed = False

    failures: dict[str, BaseException] = {}  # noqa: RUF012 - set per test
    ping_failures: list[BaseException] = []  # noqa: RUF012

    async def execute(self, sql: str, args: Sequence[Any], timeout: float | None) -> int:
        failure = self.failures.get(sql)
        if failure is not None:
            raise failure
        return len(args)

    async def executemany(
        self, sql: str, args: Sequence[Sequence[Any]], timeout: float | None
    ) -> None:
        return None

    async def fetch(self, sql: str, args: Sequence[Any], timeout: float | None) -> list[Row]:
        return [Row({"sql": 0, "args": 1}, (sql, tuple(args)))]

    async def cursor(self, sql: str, args: Sequence[Any], batch: int) -> AsyncGenerator[Row, None]:
        for i in range(3):
            if sql in self.failures:
                raise self.failures[sql]
            yield Row({"i": 0}, (i,))

    async def ping(self, timeout: float | None) -> None:
        if self.ping_failures:
            raise self.ping_failures.pop()

    def is_closed(self) -> bool:
        return self.closed

    async def close(self, timeout: float | None) -> None:
        self.closed = True

    def terminate(self) -> None:
        self.closed = True


class EchoDriver(Driver):
    PLUGIN_NAME = "echo"
    SCHEMES = ("echo",)
    DIALECT = SQLITE

    async def connect(self, timeout: float | None) -> DriverConnection:
        return EchoConnection()


class EchoPlugin:
    @hookimpl
    def flowcoro_db_drivers(self) -> list[type[Driver]]:
        return [EchoDriver]


@pytest.fixture
def echo_driver() -> Iterator[None]:
    pm = plugin_manager()
    plugin = EchoPlugin()
    pm.register(plugin, name="test-echo-driver")
    try:
        yield
    finally:
        pm.unregister(plugin)


def test_builtin_drivers_are_registered_through_the_hook() -> None:
    found = drivers()
    for scheme in ("postgresql", "postgres", "mysql", "mariadb", "sqlite"):
        assert scheme in found
    assert driver_for("POSTGRESQL").PLUGIN_NAME == "postgresql"
    with pytest.raises(ValueError, match="no database driver for scheme 'oracle'"):
        driver_for("oracle")
    assert {c.PLUGIN_NAME for c in db_plugin.flowcoro_db_drivers()} == {
        "postgresql",
        "mysql",
        "sqlite",
    }
    names = [s.key for s in db_plugin.sql_settings()]
    assert names == ["db_url"]
    assert [c.name for c in db_plugin.flowcoro_cli_commands()] == ["db"]


async def test_third_party_driver(echo_driver: None) -> None:
    db = Database("echo://anything", name="echo")
    assert isinstance(db, Component)
    await db.start(None)  # type: ignore[arg-type]
    try:
        row = await db.fetchrow("SELECT :a, :b", {"a": 1, "b": 2})
        assert row is not None
        assert row.sql == "SELECT ?, ?"
        assert row.args == (1, 2)
        assert await db.fetchval("SELECT ?", 5, column=1) == (5,)
        assert await db.execute("UPDATE x SET y = ?", 1) == 1
        await db.executemany("INSERT ?", [(1,), (2,)])
        assert [r.i async for r in db.iterate("SELECT i")] == [0, 1, 2]
        async with db.connection() as conn:
            assert (await conn.fetchrow("SELECT 1")) is not None
            assert await conn.fetchval("SELECT 1") == "SELECT 1"
            assert await conn.execute("X ?", 1) == 1
            await conn.executemany("X :a", [{"a": 1}])
            assert [r.i async for r in conn.iterate("S")] == [0, 1, 2]
            assert len(await conn.fetch("S")) == 1
        async with db.transaction() as tx:
            await tx.execute("X")
        await db.health_check()
        assert "echo://anything" in repr(db)
    finally:
        await db.stop()


def test_options_are_validated(echo_driver: None) -> None:
    with pytest.raises(ValueError, match="max_queries"):
        Database("echo://x", max_queries=0)
    with pytest.raises(ValueError, match="retries"):
        Database("echo://x", retries=-1)
    with pytest.raises(ValueError, match="acquire_timeout"):
        Database("echo://x", acquire_timeout=0)
    with pytest.raises(ValueError, match="command_timeout"):
        Database("echo://x", command_timeout=-1)
    with pytest.raises(ValueError, match="url"):
        Database("not a url")


def _write(d: Path, name: str, text: str) -> None:
    (d / name).write_text(text, encoding="utf-8")


async def test_migrations(sql_url: str, tmp_path: Path, table: str) -> None:
    d = tmp_path / "migrations"
    d.mkdir()
    _write(
        d,
        "0001_create.sql",
        f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, note VARCHAR(50));\n-- done\n",
    )
    _write(
        d,
        "0002_rows.sql",
        f"INSERT INTO {table} VALUES (1, 'a?b:c 50%');\nINSERT INTO {table} VALUES (2, 'x');",
    )
    async with Database(sql_url) as db:
        try:
            applied = await migrate(db, d, target=1, table=f"{table}_v")
            assert [m.version for m in applied] == [1]
            states = await status(db, d, table=f"{table}_v")
            assert [(s.migration.version, s.applied_at is not None) for s in states] == [
                (1, True),
                (2, False),
            ]
            assert [m.version for m in await migrate(db, d, table=f"{table}_v")] == [2]
            assert await migrate(db, d, table=f"{table}_v") == []
            assert await db.fetchval(f"SELECT note FROM {table} WHERE id = 1") == "a?b:c 50%"
            # a failing migration is named and not recorded
            _write(d, "0003_bad.sql", f"INSERT INTO {table} VALUES (3, 'y');\nSELEKT nonsense;")
            with pytest.raises(MigrationError, match=r"0003_bad\.sql"):
                await migrate(db, d, table=f"{table}_v")
            done = [
                s.migration.version for s in await status(db, d, table=f"{table}_v") if s.applied_at
            ]
            assert done == [1, 2]
            if not sql_url.startswith("mysql"):  # MySQL commits DDL and DML implicitly
                assert await db.fetchval(f"SELECT count(*) FROM {table} WHERE id = 3") == 0
        finally:
            await db.execute(f"DROP TABLE IF EXISTS {table}")
            await db.execute(f"DROP TABLE IF EXISTS {table}_v")
        with pytest.raises(MigrationError, match="identifier"):
            await migrate(db, d, table="x; DROP TABLE y")


def test_discover_rejects_bad_directories(tmp_path: Path) -> None:
    with pytest.raises(MigrationError, match="does not exist"):
        discover(tmp_path / "nope")
    _write(tmp_path, "0001_a.sql", "SELECT 1")
    _write(tmp_path, "1_b.sql", "SELECT 1")
    with pytest.raises(MigrationError, match="used twice"):
        discover(tmp_path)
    (tmp_path / "1_b.sql").unlink()
    _write(tmp_path, "notes.sql", "")
    with pytest.raises(MigrationError, match=r"notes\.sql"):
        discover(tmp_path)


def test_cli_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    d = tmp_path / "m"
    d.mkdir()
    _write(d, "0001_t.sql", "CREATE TABLE cli_t (x INTEGER);")
    cmd = DBCommand()
    parser = argparse.ArgumentParser()
    cmd.configure(parser)
    url = f"sqlite:///{tmp_path}/cli.db"
    assert cmd.run(parser.parse_args(["status", "--url", url, "--dir", str(d)])) == 0
    assert "pending" in capsys.readouterr().out
    monkeypatch.setenv("FLOWCORO_DB_URL", url)
    assert cmd.run(parser.parse_args(["migrate", "--dir", str(d)])) == 0
    assert "1 migration(s) applied" in capsys.readouterr().out
    assert cmd.run(parser.parse_args(["status", "--dir", str(d)])) == 0
    assert "applied 20" in capsys.readouterr().out
    assert cmd.run(parser.parse_args(["migrate", "--dir", str(tmp_path / "missing")])) == 1
    assert "does not exist" in capsys.readouterr().out


def test_query_error_is_a_db_error() -> None:
    assert issubclass(QueryError, Exception)


def test_registry_without_the_core_plugin_host(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    import pluggy

    from flowcoro.db import _registry

    # no flowcoro.core.plugins: a private manager with flowcoro-db's own plugin
    monkeypatch.setitem(sys.modules, "flowcoro.core.plugins", None)
    monkeypatch.setattr(_registry, "_fallback", None)
    assert "mysql" in _registry.drivers()
    assert _registry.plugin_manager() is _registry.plugin_manager()
    monkeypatch.undo()
    # a host that never heard of flowcoro-db's hook specification gets it added
    bare = pluggy.PluginManager("flowcoro")
    monkeypatch.setattr(_registry, "_host_pm", lambda: bare)
    assert _registry.drivers() == {}
    assert hasattr(bare.hook, "flowcoro_db_drivers")


async def test_failure_paths_with_a_scripted_driver(echo_driver: None) -> None:
    import asyncio

    from flowcoro.core.errors import BusyResourceError, ClosedResourceError
    from flowcoro.db import DBConnectionError, TransactionError
    from flowcoro.db.session import Transaction

    failures = EchoConnection.failures
    db = Database("echo://x", max_size=1, health_check_after=0)
    try:
        # a connection that fails its ping is replaced; a cancelled ping loses it too
        EchoConnection.ping_failures.append(DBConnectionError("dead"))
        assert await db.fetchval("SELECT 1") == "SELECT 1"
        EchoConnection.ping_failures.append(asyncio.CancelledError())
        with pytest.raises(asyncio.CancelledError):
            await db.fetchval("SELECT 1")
        assert db.statistics().pool.discarded == 2

        # the connection breaks inside a transaction that then ends normally: not committed
        failures["BOOM"] = DBConnectionError("lost")
        with pytest.raises(TransactionError, match="did not commit"):  # noqa: PT012
            async with db.transaction() as tx:
                with pytest.raises(DBConnectionError):
                    await tx.execute("BOOM")
        with pytest.raises(ValueError, match="user"):  # noqa: PT012
            async with db.transaction() as tx:
                with pytest.raises(DBConnectionError):
                    await tx.execute("BOOM")
                with pytest.raises(DBConnectionError, match="broken"):
                    async with tx.transaction():  # no SAVEPOINT on a broken connection
                        pass
                raise ValueError("user error after the break")
        # COMMIT fails: raised, connection closed; ROLLBACK fails: the user's error wins
        failures["COMMIT"] = DBConnectionError("lost at commit")
        with pytest.raises(DBConnectionError, match="commit"):
            async with db.transaction():
                pass
        failures["ROLLBACK"] = DBConnectionError("lost at rollback")
        with pytest.raises(KeyError):
            async with db.transaction():
                raise KeyError("mine")
        failures["BEGIN"] = DBConnectionError("lost at begin")
        with pytest.raises(DBConnectionError, match="begin"):
            async with db.transaction():
                pass
        # cancelled during COMMIT: the outcome is unknown, so the connection is closed
        failures.clear()
        discarded = db.statistics().pool.discarded
        failures["COMMIT"] = asyncio.CancelledError()
        with pytest.raises(asyncio.CancelledError):
            async with db.transaction() as tx:
                await tx.execute("UPDATE")
        assert db.statistics().pool.discarded == discarded + 1
        # a database error at BEGIN (the connection itself is fine): raised, connection kept
        failures["BEGIN"] = QueryError("refused")
        with pytest.raises(QueryError, match="refused"):
            async with db.transaction():
                pass
        assert db.statistics().pool.discarded == discarded + 1
        assert db.statistics().pool.idle == 1
        failures.clear()
        # streams: a lost connection mid-stream, a query error, a busy connection
        failures["S"] = DBConnectionError("lost mid-stream")
        with pytest.raises(DBConnectionError):
            async for _ in db.iterate("S"):
                pass
        failures["S"] = QueryError("bad")
        async with db.connection() as conn:
            with pytest.raises(QueryError):
                async for _ in conn.iterate("S"):
                    pass
            rows = conn.iterate("T")
            assert (await rows.__anext__()).i == 0
            with pytest.raises(BusyResourceError):
                async for _ in conn.iterate("T"):
                    pass
            await rows.aclose()
            with pytest.raises(DBConnectionError, match="broken"):
                await conn.execute("X")
        failures.clear()
        with pytest.raises(ClosedResourceError):
            _ = Transaction(None, None, False, db=db).connection
        assert db.statistics().pool.in_use == 0
    finally:
        failures.clear()
        EchoConnection.ping_failures.clear()
        await db.aclose()


async def test_database_is_an_app_component_with_a_health_check(tmp_path: Path) -> None:
    from flowcoro.core import App

    app = App("db-test")
    db = Database(f"sqlite:///{tmp_path}/app.db")
    app.add_component(db)
    async with app:
        report = await app.health.run()
        assert report.ok
        assert [(c.name, c.ok) for c in report.checks] == [("db", True)]
        assert app.settings.get("db_url") == "sqlite:///flowcoro.db"
        await db.aclose()  # the database goes away: readiness turns failing
        report = await app.health.run()
        assert not report.ok
