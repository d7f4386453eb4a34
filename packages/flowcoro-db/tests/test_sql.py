"""Pure logic: placeholder translation (property-tested), statement splitting, URLs, rows."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowcoro.db import QueryError
from flowcoro.db._sql import MYSQL, POSTGRES, SQLITE, Dialect, bind, split_statements, translate
from flowcoro.db.rows import Row
from flowcoro.db.url import parse_url

# Pieces a statement is made of: text the translator must leave alone, and placeholders.
_word = st.text(alphabet="abcxyz_019 ,()=<>+*", min_size=1, max_size=8)
_inner = st.text(alphabet="ab ?:%$#-*/\n", max_size=8)


def _verbatim(d: Dialect) -> st.SearchStrategy[str]:
    options = [
        _word.map(lambda w: w.strip(":") or "x"),
        _inner.map(lambda s: "'" + s.replace("'", "''") + "'"),
        _inner.map(lambda s: '"' + s.replace('"', '""') + '"'),
        _inner.map(lambda s: "/*" + s.replace("*", "").replace("/", "") + "*/ "),
        _inner.map(lambda s: "--" + s.replace("\n", "") + "\n"),
    ]
    if d.dollar_quotes:
        options.append(_inner.map(lambda s: " $q$" + s.replace("$", "") + "$q$ "))
        options.append(st.just(" x::int "))
    if d.backticks:
        options.append(_inner.map(lambda s: "`" + s.replace("`", "") + "`"))
    if d.hash_comments:
        options.append(_inner.map(lambda s: " #" + s.replace("\n", "") + "\n"))
    return st.one_of(options)


def _expected_verbatim(text: str, d: Dialect) -> str:
    return text.replace("%", "%%") if d.paramstyle == "format" else text


@pytest.mark.parametrize("dialect", [POSTGRES, MYSQL, SQLITE], ids=lambda d: d.name)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_positional_translation_keeps_everything_else(
    dialect: Dialect, data: st.DataObject
) -> None:
    parts = data.draw(st.lists(st.one_of(_verbatim(dialect), st.just(None)), max_size=12))
    sql = "".join(" ? " if p is None else p for p in parts)
    expected, k = [], 0
    for p in parts:
        if p is None:
            k += 1
            mark = {"numeric": f"${k}", "format": "%s", "qmark": "?"}[dialect.paramstyle]
            expected.append(f" {mark} ")
        else:
            expected.append(_expected_verbatim(p, dialect))
    t = translate(sql, dialect)
    assert t.sql == "".join(expected)
    assert t.nparams == k
    assert t.names is None


@pytest.mark.parametrize("dialect", [POSTGRES, MYSQL, SQLITE], ids=lambda d: d.name)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_named_translation(dialect: Dialect, data: st.DataObject) -> None:
    names = st.sampled_from(["a", "b", "user_id", "x1"])
    parts = data.draw(
        st.lists(st.one_of(_verbatim(dialect), names.map(lambda n: (n,))), max_size=12)
    )
    sql = "".join(f" :{p[0]} " if isinstance(p, tuple) else p for p in parts)
    t = translate(sql, dialect)
    used = [p[0] for p in parts if isinstance(p, tuple)]
    if not used:
        assert t.names is None
        return
    assert t.names is not None
    values = {n: f"v-{n}" for n in used}
    args = bind(t, [values])
    if dialect.paramstyle == "numeric":
        assert list(t.names) == list(dict.fromkeys(used))  # each name once, $k reused
        assert list(args) == [values[n] for n in t.names]
    else:
        assert list(t.names) == used
        assert list(args) == [values[n] for n in used]


def test_translation_edge_cases() -> None:
    assert translate("SELECT x::int, ?", POSTGRES).sql == "SELECT x::int, $1"
    assert translate("SELECT data ?? 'k', ?", POSTGRES).sql == "SELECT data ? 'k', $1"
    assert translate("SELECT E'it\\'s ?', ?", POSTGRES).sql == "SELECT E'it\\'s ?', $1"
    assert translate("SELECT 'a\\'?', ?", MYSQL).sql == "SELECT 'a\\'?', %s"
    assert translate("SELECT $1a$ ? $1a$", POSTGRES).sql == "SELECT $1a$ $1 $1a$"  # no digit tags
    assert translate("SELECT $tag$ ? $tag$, ?", POSTGRES).sql == "SELECT $tag$ ? $tag$, $1"
    assert translate("SELECT a$b, ?", POSTGRES).sql == "SELECT a$b, $1"
    assert translate("/* /* ? */ ? */ ?", POSTGRES).sql == "/* /* ? */ ? */ $1"
    assert translate("SELECT ':a', :a, :b, :a", POSTGRES) == (
        "SELECT ':a', $1, $2, $1",
        ("a", "b"),
        2,
    )
    assert translate("SELECT :a, :a", MYSQL).names == ("a", "a")
    assert translate("SELECT 'unterminated ?", SQLITE).nparams == 0
    assert translate("SELECT 1 -- no newline ?", SQLITE).nparams == 0
    assert translate("SELECT $$ unterminated ?", POSTGRES).nparams == 0
    assert translate("SELECT :1, : a", SQLITE).nparams == 0
    with pytest.raises(QueryError, match="mix"):
        translate("SELECT ?, :a", SQLITE)
    with pytest.raises(QueryError, match="mix"):
        translate("SELECT :a, ?", SQLITE)
    with pytest.raises(TypeError):
        translate(b"SELECT 1", SQLITE)  # type: ignore[arg-type]
    # the cache is bounded
    for i in range(2100):
        translate(f"SELECT {i}", SQLITE)


def test_split_statements() -> None:
    script = """
    -- a comment; with a semicolon
    CREATE TABLE a (x TEXT DEFAULT ';');
    /* block ; */ INSERT INTO a VALUES ('it''s; fine');
    CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;
    -- only a comment
    """
    out = split_statements(script, POSTGRES)
    assert len(out) == 3
    assert out[2].startswith("CREATE FUNCTION")
    assert "SELECT 1;" in out[2]
    assert split_statements("SELECT '\\';'; SELECT 2 # c;\n", MYSQL) == [
        "SELECT '\\';'",
        "SELECT 2 # c;",
    ]
    assert split_statements("SELECT 1; /* unterminated", SQLITE) == ["SELECT 1"]
    assert split_statements("SELECT `a;b`", SQLITE) == ["SELECT `a;b`"]


def test_parse_url() -> None:
    u = parse_url("postgresql://us%40er:p%3Ass@db.example:6432/app?sslmode=require")
    assert (u.user, u.password, u.host, u.port, u.database) == (
        "us@er",
        "p:ss",
        "db.example",
        6432,
        "app",
    )
    assert u.query == {"sslmode": "require"}
    assert "***" in u.redacted()
    assert "p%3Ass" not in u.redacted()
    assert u.address == "db.example:6432"
    assert parse_url("mysql://root@h/x").redacted() == "mysql://root@h/x"
    assert parse_url("sqlite:///rel.db").database == "rel.db"
    assert parse_url("sqlite:////abs/x.db").database == "/abs/x.db"
    assert parse_url("sqlite://:memory:").database == ":memory:"
    assert parse_url("mysql://h/x").address == "h"
    with pytest.raises(ValueError, match="url"):
        parse_url("nonsense")
    with pytest.raises(ValueError, match="port"):
        parse_url("postgresql://h:notaport/x")


def test_row_mapping() -> None:
    row = Row({"a": 0, "b": 1}, (1, "two"))
    assert row.a == 1
    assert row["b"] == "two"
    assert row[1] == "two"
    assert list(row) == ["a", "b"]
    assert list(row.values()) == [1, "two"]
    assert row == Row({"a": 0, "b": 1}, (1, "two"))
    assert row != Row({"a": 0, "b": 1}, (1, "three"))
    assert row == {"a": 1, "b": "two"}
    assert row.__eq__(5) is NotImplemented
    with pytest.raises(KeyError):
        row["c"]
    with pytest.raises(AttributeError):
        _ = row.c
    with pytest.raises(TypeError):
        hash(row)
    blank = Row.__new__(Row)
    with pytest.raises(AttributeError):
        _ = blank._index


def test_driver_exception_mapping() -> None:
    """Each adapter's translation of its library's exceptions (pure: no server needed)."""
    import asyncio
    import sqlite3

    import asyncmy.errors as me
    import asyncpg

    from flowcoro.db import (
        DBConnectionError,
        DBError,
        DBTimeoutError,
        DeadlockError,
        TransactionError,
        UniqueViolationError,
    )
    from flowcoro.db.drivers import mysql, postgres, sqlite

    def kind(err: DBError) -> type[DBError]:
        return type(err)

    assert kind(mysql._translate(me.OperationalError(2013, "lost"))) is DBConnectionError
    assert kind(mysql._translate(me.IntegrityError(1062, "dup"))) is UniqueViolationError
    assert kind(mysql._translate(me.OperationalError(1213, "deadlock"))) is DeadlockError
    assert kind(mysql._translate(me.OperationalError(1205, "lock wait"))) is TransactionError
    assert kind(mysql._translate(me.OperationalError(1317, "interrupted"))) is DBTimeoutError
    assert kind(mysql._translate(ConnectionResetError())) is DBConnectionError
    assert kind(mysql._translate(asyncio.IncompleteReadError(b"", 4))) is DBConnectionError
    assert kind(mysql._translate(TypeError("bad arg"))) is QueryError
    assert kind(mysql._translate(RuntimeError("odd"))) is DBConnectionError
    assert kind(mysql._translate(TimeoutError())) is DBTimeoutError

    assert kind(postgres._translate(TimeoutError())) is DBTimeoutError
    assert kind(postgres._translate(ConnectionResetError())) is DBConnectionError
    assert (
        kind(postgres._translate(asyncpg.InterfaceError("connection is closed")))
        is DBConnectionError
    )
    assert kind(postgres._translate(asyncpg.InterfaceError("another operation"))) is QueryError
    assert kind(postgres._translate(ValueError("x"))) is QueryError

    assert (
        kind(sqlite._translate(sqlite3.OperationalError("database is locked"))) is TransactionError
    )
    assert kind(sqlite._translate(sqlite3.OperationalError("interrupted"))) is DBTimeoutError
    assert (
        kind(sqlite._translate(sqlite3.OperationalError("unable to open database")))
        is DBConnectionError
    )
    assert (
        kind(sqlite._translate(sqlite3.ProgrammingError("Cannot operate on a closed database.")))
        is DBConnectionError
    )
    assert kind(sqlite._translate(ValueError("no active connection"))) is DBConnectionError
    assert kind(sqlite._translate(sqlite3.InterfaceError("bad binding"))) is QueryError
    assert (
        kind(sqlite._translate(sqlite3.IntegrityError("NOT NULL constraint failed"))).__name__
        == "IntegrityError"
    )
