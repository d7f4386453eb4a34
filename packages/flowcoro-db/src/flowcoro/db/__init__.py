"""FlowCoro data access: PostgreSQL, MySQL/MariaDB, SQLite and Redis."""

from __future__ import annotations

from flowcoro.db._version import __version__
from flowcoro.db.abc import Driver, DriverConnection
from flowcoro.db.database import Database, DatabaseStatistics
from flowcoro.db.errors import (
    AuthenticationError,
    CommandError,
    DBConnectionError,
    DBError,
    DBPoolTimeout,
    DBTimeoutError,
    DeadlockError,
    IntegrityError,
    QueryError,
    SerializationError,
    SyntaxError,
    TransactionError,
    UniqueViolationError,
)
from flowcoro.db.rows import Row
from flowcoro.db.session import Connection, Transaction

__all__ = [
    "__version__",
    # SQL
    "Database",
    "DatabaseStatistics",
    "Connection",
    "Transaction",
    "Row",
    "Driver",
    "DriverConnection",
    "DBError",
    "DBConnectionError",
    "AuthenticationError",
    "DBTimeoutError",
    "DBPoolTimeout",
    "IntegrityError",
    "UniqueViolationError",
    "QueryError",
    "SyntaxError",
    "TransactionError",
    "DeadlockError",
    "SerializationError",
    "CommandError",
]
