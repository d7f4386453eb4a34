"""Mapping from SQLSTATE codes (PostgreSQL; MySQL errors are mapped to them too) to our errors."""

from __future__ import annotations

from flowcoro.db.errors import (
    AuthenticationError,
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

__all__ = ["from_sqlstate"]

_EXACT: dict[str, type[DBError]] = {
    "23505": UniqueViolationError,
    "42601": SyntaxError,
    "40P01": DeadlockError,
    "40001": SerializationError,
    "57014": DBTimeoutError,  # query_canceled: our cancel request after a timeout
    "57P01": DBConnectionError,  # admin_shutdown (pg_terminate_backend, server stop)
    "57P02": DBConnectionError,
    "57P03": DBConnectionError,
    "53300": DBConnectionError,  # too many connections
    "3D000": DBConnectionError,  # the database does not exist
    "28P01": AuthenticationError,
    "28000": AuthenticationError,
}
_CLASS: dict[str, type[DBError]] = {
    "23": IntegrityError,
    "40": TransactionError,
    "28": AuthenticationError,
    "08": DBConnectionError,
}


def from_sqlstate(state: str | None) -> type[DBError]:
    if not state:
        return QueryError
    return _EXACT.get(state) or _CLASS.get(state[:2]) or QueryError
