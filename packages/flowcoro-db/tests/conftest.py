"""Fixtures of flowcoro-db's tests (SQL part). Async helpers live in the test modules: each
async test owns its event loop, so databases are opened inside the test."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

SQL_BACKENDS = ["postgres", "mariadb", "sqlite"]


@pytest.fixture(params=SQL_BACKENDS)
def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of each SQL backend in turn: PostgreSQL, MariaDB, a temp-file SQLite."""
    if request.param == "postgres":
        dsn: str = request.getfixturevalue("postgres_dsn")
        return dsn
    if request.param == "mariadb":
        dsn = request.getfixturevalue("mariadb_dsn")
        return dsn
    return f"sqlite:///{tmp_path}/test.db"


@pytest.fixture
def table() -> str:
    """A table name no other test (or parallel run) uses."""
    return f"t_{uuid.uuid4().hex[:16]}"
