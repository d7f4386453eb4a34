"""FlowCoro data access: PostgreSQL, MySQL/MariaDB, SQLite and Redis."""

from __future__ import annotations

from flowcoro.db._version import __version__
from flowcoro.db.errors import (
    AuthenticationError,
    CommandError,
    DBConnectionError,
    DBError,
    DBTimeoutError,
    DeadlockError,
    IntegrityError,
    QueryError,
    SerializationError,
    SyntaxError,
    TransactionError,
    UniqueViolationError,
)

__all__ = [
    "__version__",
    "DBError",
    "DBConnectionError",
    "AuthenticationError",
    "DBTimeoutError",
    "IntegrityError",
    "UniqueViolationError",
    "QueryError",
    "SyntaxError",
    "TransactionError",
    "DeadlockError",
    "SerializationError",
    "CommandError",
]
