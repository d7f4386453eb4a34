"""Client configuration: `Timeout` (connect / read / write / pool) and `Limits`."""

from __future__ import annotations

import math
from typing import Final, NamedTuple

__all__ = ["Timeout", "Limits", "DEFAULT_TIMEOUT", "DEFAULT_LIMITS"]


def _check_seconds(field: str, value: float | None, owner: str = "Timeout") -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{owner}: {field!r} must be a number of seconds or None, got {value!r}")
    if math.isnan(value) or value <= 0:
        raise ValueError(f"{owner}: {field!r} must be > 0 or None, got {value!r}")
    return float(value)


class Timeout(NamedTuple):
    """Timeouts in seconds (None = no limit of its own; the caller's ``deadline`` still applies).

    - ``connect``: TCP connect plus TLS handshake.
    - ``read``: the longest pause between two arrivals of response bytes.
    - ``write``: the longest wait for the socket to take more of the request body.
    - ``pool``: waiting for a free connection to the origin (a new connection's connect counts).
    """

    connect: float | None = 10.0
    read: float | None = 30.0
    write: float | None = 30.0
    pool: float | None = 30.0

    @classmethod
    def of(cls, value: Timeout | float | None) -> Timeout:
        """A `Timeout` from a `Timeout`, one number for all four, or None for no limits."""
        if isinstance(value, Timeout):
            for field in cls._fields:
                _check_seconds(field, getattr(value, field))
            return value
        seconds = _check_seconds("timeout", value)
        return cls(seconds, seconds, seconds, seconds)


class Limits(NamedTuple):
    """Pool and response limits (defaults in the README).

    - ``max_connections_per_host``: open connections per origin (scheme, host, port).
    - ``keepalive_expiry``: seconds an idle kept-alive connection is kept (None: until closed).
    - ``max_header_size``: bytes of status line plus headers of a response.
    - ``max_body_size``: bytes of a body read into memory (``.read()``, non-streamed requests),
      after decompression; streamed bodies are not limited.
    """

    max_connections_per_host: int = 100
    keepalive_expiry: float | None = 15.0
    max_header_size: int = 64 * 1024
    max_body_size: int = 64 * 1024 * 1024

    def validate(self) -> Limits:
        for field in ("max_connections_per_host", "max_header_size", "max_body_size"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Limits: {field!r} must be an int >= 1, got {value!r}")
        _check_seconds("keepalive_expiry", self.keepalive_expiry, "Limits")
        return self


DEFAULT_TIMEOUT: Final = Timeout()
DEFAULT_LIMITS: Final = Limits()
