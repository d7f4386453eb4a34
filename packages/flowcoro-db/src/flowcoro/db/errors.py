"""One error hierarchy for every database: user code catches these whatever the driver.

Driver exceptions are translated at the adapter boundary and chained (``raise ... from exc``), so
the original is always one ``__cause__`` away.
"""

from __future__ import annotations

from flowcoro.core.errors import FlowCoroError, PoolTimeout

__all__ = [
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


class DBError(FlowCoroError):
    """Base of every data-access error."""


class DBConnectionError(DBError, ConnectionError):
    """The server could not be reached, or the connection was lost (the pool replaces it)."""


class AuthenticationError(DBConnectionError):
    """The server refused the credentials."""


class DBTimeoutError(DBError, TimeoutError):
    """A query, command or pool wait ran out of time (its own timeout or the caller's deadline)."""


class DBPoolTimeout(DBTimeoutError, PoolTimeout):
    """No connection became free in time (the pool's acquire timeout or the caller's deadline)."""


class IntegrityError(DBError):
    """A constraint was violated."""


class UniqueViolationError(IntegrityError):
    """A unique or primary-key constraint was violated."""


class QueryError(DBError):
    """The server rejected the statement (bad SQL, unknown table, wrong arguments)."""


class SyntaxError(QueryError):
    """The statement does not parse."""


class TransactionError(DBError):
    """The transaction cannot go on; retry it from the start."""


class DeadlockError(TransactionError):
    """The server chose this transaction as a deadlock victim."""


class SerializationError(TransactionError):
    """A serializable or repeatable-read transaction conflicted with another."""


class CommandError(DBError):
    """A Redis command was rejected by the server (an error reply)."""
