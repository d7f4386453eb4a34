"""Errors of flowcoro-net: one base, with timeout, connection and limit categories.

`OSError`s from the loop are translated at the boundary (`connect`, the stream methods) and
chained, so the original is one ``__cause__`` away.
"""

from __future__ import annotations

from flowcoro.core.errors import BrokenResourceError, ClosedResourceError, FlowCoroError

__all__ = [
    "NetError",
    "InvalidLimit",
    "NetTimeout",
    "ConnectTimeout",
    "ReadTimeout",
    "WriteTimeout",
    "ConnectError",
    "ConnectionClosedError",
    "IncompleteReadError",
    "LimitExceeded",
    "WorkerError",
    "ClosedPoolError",
]


class NetError(FlowCoroError):
    """Base of every error flowcoro-net raises."""


class InvalidLimit(NetError, ValueError):
    """A limit or server argument has a bad value; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class NetTimeout(NetError, TimeoutError):
    """A network wait ran out of time (its own timeout or the caller's deadline)."""


class ConnectTimeout(NetTimeout):
    """Connecting (including the TLS handshake) took longer than the timeout."""


class ReadTimeout(NetTimeout):
    """No data arrived within the read timeout."""


class WriteTimeout(NetTimeout):
    """The peer did not take the buffered data within the write timeout."""


class ConnectError(NetError, ConnectionError):
    """The connection could not be established (refused, unreachable, TLS failure)."""


class ConnectionClosedError(NetError, BrokenResourceError):
    """The connection was closed or reset while it was being used."""


class IncompleteReadError(ConnectionClosedError):
    """The peer closed the connection before the expected bytes arrived; `partial` has them."""

    def __init__(self, partial: bytes, expected: int | None) -> None:
        want = "a separator" if expected is None else f"{expected} bytes"
        super().__init__(f"connection closed after {len(partial)} bytes while reading {want}")
        self.partial = partial
        self.expected = expected


class LimitExceeded(NetError):
    """A per-connection limit was exceeded (e.g. a line longer than the read buffer cap)."""

    def __init__(self, limit: str, value: int) -> None:
        super().__init__(f"limit {limit}={value} exceeded")
        self.limit = limit
        self.value = value


class WorkerError(NetError):
    """Worker processes kept crashing; the supervisor gave up."""


class ClosedPoolError(NetError, ClosedResourceError):
    """The connection pool was closed."""
