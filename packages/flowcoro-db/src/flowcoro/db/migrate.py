"""A minimal migration runner: ordered SQL files, applied versions recorded in a table.

Files are named ``<version>_<name>.sql`` (``0001_create_users.sql``); versions are integers and
run in ascending order. Each migration runs in one transaction with the row that records it, so a
failing migration leaves nothing behind -- where the database allows: MySQL/MariaDB commit DDL
statements implicitly, so there a failed migration may be half applied (it is not recorded).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import re
from pathlib import Path
from typing import NamedTuple

from flowcoro.core.abc import Command
from flowcoro.db._sql import split_statements
from flowcoro.db.database import Database
from flowcoro.db.errors import DBError

__all__ = ["Migration", "MigrationError", "discover", "migrate", "status", "DBCommand"]

TABLE = "flowcoro_migrations"
_NAME = re.compile(r"^(\d+)_([\w.-]+)\.sql$")


class MigrationError(DBError):
    """The migrations directory is inconsistent, or a migration failed (the message names it)."""


class Migration(NamedTuple):
    version: int
    name: str
    path: Path


class MigrationStatus(NamedTuple):
    migration: Migration
    applied_at: str | None  # ISO 8601 UTC, None when pending


def discover(directory: str | Path) -> list[Migration]:
    """The migrations in ``directory``, by version; raise on duplicates or stray ``.sql`` files."""
    root = Path(directory)
    if not root.is_dir():
        raise MigrationError(f"migrations directory {str(root)!r} does not exist")
    found: dict[int, Migration] = {}
    for path in sorted(root.glob("*.sql")):
        m = _NAME.match(path.name)
        if m is None:
            raise MigrationError(f"{path.name!r}: expected '<version>_<name>.sql'")
        version = int(m.group(1))
        if version in found:
            raise MigrationError(
                f"version {version} is used twice: {found[version].path.name!r}, {path.name!r}"
            )
        found[version] = Migration(version, m.group(2), path)
    return [found[v] for v in sorted(found)]


def _check_table(table: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", table):
        raise MigrationError(f"table: expected an unquoted SQL identifier, got {table!r}")
    return table


async def _ensure_table(db: Database, table: str) -> None:
    await db.execute(
        f"CREATE TABLE IF NOT EXISTS {table} ("
        "version BIGINT PRIMARY KEY, name VARCHAR(255) NOT NULL, applied_at VARCHAR(40) NOT NULL)"
    )


async def _applied(db: Database, table: str) -> dict[int, str]:
    rows = await db.fetch(f"SELECT version, applied_at FROM {table}")
    return {int(r["version"]): str(r["applied_at"]) for r in rows}


async def status(
    db: Database, directory: str | Path, *, table: str = TABLE
) -> list[MigrationStatus]:
    """Every migration file with when it was applied (None: pending)."""
    migrations = discover(directory)
    await _ensure_table(db, _check_table(table))
    done = await _applied(db, table)
    return [MigrationStatus(m, done.get(m.version)) for m in migrations]


async def migrate(
    db: Database, directory: str | Path, *, target: int | None = None, table: str = TABLE
) -> list[Migration]:
    """Apply pending migrations up to ``target`` (all by default); return those applied.
    ``table`` records the applied versions (default ``flowcoro_migrations``)."""
    migrations = discover(directory)
    await _ensure_table(db, _check_table(table))
    done = await _applied(db, table)
    applied: list[Migration] = []
    for m in migrations:
        if m.version in done or (target is not None and m.version > target):
            continue
        statements = split_statements(m.path.read_text(encoding="utf-8"), db._dialect)
        when = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        try:
            async with db.transaction() as tx:
                for statement in statements:
                    # run verbatim: a migration's '?' or ':x' is SQL, not a placeholder
                    if db._dialect.paramstyle == "format":
                        statement = statement.replace("%", "%%")
                    await tx._call("execute", statement, (), None)
                await tx.execute(
                    f"INSERT INTO {table} (version, name, applied_at) VALUES (?, ?, ?)",
                    m.version,
                    m.name,
                    when,
                )
        except DBError as exc:
            raise MigrationError(f"migration {m.path.name!r} failed: {exc}") from exc
        applied.append(m)
    return applied


class DBCommand(Command):
    """``flowcoro db migrate`` / ``flowcoro db status``."""

    name = "db"
    help = "apply or list SQL migrations (ordered <version>_<name>.sql files)"

    def configure(self, parser: argparse.ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="db_command", required=True)
        for name, text in (
            ("migrate", "apply pending migrations"),
            ("status", "list migrations and when each was applied"),
        ):
            p = sub.add_parser(name, help=text)
            p.add_argument(
                "--url",
                default=None,
                help="database URL (default: $FLOWCORO_DB_URL, else sqlite:///flowcoro.db)",
            )
            p.add_argument(
                "--dir", default="migrations", help="migrations directory (default: migrations)"
            )
            if name == "migrate":
                p.add_argument("--target", type=int, default=None, help="stop at this version")

    def run(self, args: argparse.Namespace) -> int:
        url = args.url or os.environ.get("FLOWCORO_DB_URL") or "sqlite:///flowcoro.db"
        try:
            return asyncio.run(self._run(url, args))
        except DBError as exc:
            print(f"flowcoro db {args.db_command}: {exc}")
            return 1

    async def _run(self, url: str, args: argparse.Namespace) -> int:
        async with Database(url, min_size=1, max_size=1) as db:
            if args.db_command == "migrate":
                applied = await migrate(db, args.dir, target=args.target)
                for m in applied:
                    print(f"applied {m.version} {m.name}")
                print(f"{len(applied)} migration(s) applied")
                return 0
            for s in await status(db, args.dir):
                state = f"applied {s.applied_at}" if s.applied_at else "pending"
                print(f"{s.migration.version:>6} {s.migration.name:<40} {state}")
            return 0
