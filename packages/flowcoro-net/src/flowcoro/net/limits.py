"""Limits of a server's connections, with their defaults, and the statistics it reports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

from flowcoro.net.errors import InvalidLimit

__all__ = ["Limits", "ServerStatistics", "DrainStats"]


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds of a server (and of client connections where they apply).

    - ``max_connections``: concurrent connections of one server (per worker process). At the
      limit, ``overflow="pause"`` stops accepting: new connections wait in the kernel's listen
      backlog until one closes (the server resumes below 90% of the limit);
      ``overflow="refuse"`` accepts and closes them at once (logged, counted as refused).
    - ``idle_timeout``: a connection with no activity for this long is closed (None: never).
      It is checked lazily, so it closes after between 1 and 1.5 times the timeout.
    - ``read_buffer``: bytes the stream API buffers per connection before it pauses reading
      (the kernel then pushes back on the peer); also the longest ``read_until`` line.
    - ``write_high_water`` / ``write_low_water``: the transport's write buffer marks; above
      the high mark ``drain()`` waits until the buffer falls below the low mark.
    - ``ssl_handshake_timeout``: bound of a TLS handshake.
    - ``drain_timeout``: default bound of a graceful shutdown before the rest is cut.
    """

    max_connections: int = 10_000
    overflow: Literal["pause", "refuse"] = "pause"
    idle_timeout: float | None = 60.0
    read_buffer: int = 256 * 1024
    write_high_water: int = 64 * 1024
    write_low_water: int | None = None
    ssl_handshake_timeout: float = 10.0
    drain_timeout: float = 30.0

    def __post_init__(self) -> None:
        if self.max_connections < 1:
            raise InvalidLimit("max_connections", f"must be >= 1, got {self.max_connections!r}")
        if self.overflow not in ("pause", "refuse"):
            raise InvalidLimit("overflow", f'must be "pause" or "refuse", got {self.overflow!r}')
        if self.idle_timeout is not None and not self.idle_timeout > 0:
            raise InvalidLimit("idle_timeout", f"must be > 0 or None, got {self.idle_timeout!r}")
        if self.read_buffer < 1:
            raise InvalidLimit("read_buffer", f"must be >= 1, got {self.read_buffer!r}")
        if self.write_high_water < 1:
            raise InvalidLimit("write_high_water", f"must be >= 1, got {self.write_high_water!r}")
        low = self.write_low_water
        if low is not None and not 0 <= low <= self.write_high_water:
            raise InvalidLimit(
                "write_low_water", f"must be between 0 and write_high_water, got {low!r}"
            )
        if not self.ssl_handshake_timeout > 0:
            raise InvalidLimit(
                "ssl_handshake_timeout", f"must be > 0, got {self.ssl_handshake_timeout!r}"
            )
        if not self.drain_timeout >= 0:
            raise InvalidLimit("drain_timeout", f"must be >= 0, got {self.drain_timeout!r}")

    @property
    def low_water(self) -> int:
        """The effective low water mark (a quarter of the high mark unless set)."""
        return self.write_high_water // 4 if self.write_low_water is None else self.write_low_water


class ServerStatistics(NamedTuple):
    active: int
    """Connections open now."""
    peak: int
    """Most connections open at once."""
    accepted: int
    """Connections accepted and handed to a protocol."""
    refused: int
    """Connections closed at once because of ``max_connections`` or a shutdown in progress."""
    idle_closed: int
    """Connections closed by the idle timeout."""
    paused: bool
    """Whether accepting is paused (``overflow="pause"`` at the limit)."""


class DrainStats(NamedTuple):
    connections: int
    """Connections open when the shutdown began."""
    drained: int
    """Of those, how many finished on their own within the drain timeout."""
    cut: int
    """How many were aborted when the drain timeout expired."""
    duration: float
    """Seconds the shutdown took."""
