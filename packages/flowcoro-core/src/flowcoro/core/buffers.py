"""A pool of reusable ``bytearray`` buffers for I/O (read buffers, frame assembly).

``BufferPool(size=65536, max_buffers=64)``: ``acquire()`` returns an idle buffer of ``size``
bytes or makes a new one; ``release(buf)`` keeps it for reuse while fewer than ``max_buffers``
are idle (and it still has exactly ``size`` bytes), otherwise lets it go. ``with pool.buffer() as
buf:`` does both. Contents are not cleared on release (``clear_on_release=True`` zeroes them,
for buffers that held secrets). Do not keep ``memoryview``s of a buffer after releasing it.
Single event loop use; no locks.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

__all__ = ["BufferPool", "BufferPoolStatistics"]


class BufferPoolStatistics(NamedTuple):
    size: int
    max_buffers: int
    idle: int
    created: int
    reused: int
    discarded: int


class BufferPool:
    """Reusable bytearrays of one size; see the module docstring."""

    __slots__ = ("_clear", "_idle", "created", "discarded", "max_buffers", "reused", "size")

    def __init__(
        self, size: int = 65536, *, max_buffers: int = 64, clear_on_release: bool = False
    ) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"BufferPool: 'size' must be an int >= 1, got {size!r}")
        if isinstance(max_buffers, bool) or not isinstance(max_buffers, int) or max_buffers < 0:
            raise ValueError(f"BufferPool: 'max_buffers' must be an int >= 0, got {max_buffers!r}")
        self.size = size
        self.max_buffers = max_buffers
        self._clear = clear_on_release
        self._idle: list[bytearray] = []
        self.created = self.reused = self.discarded = 0

    def acquire(self) -> bytearray:
        idle = self._idle
        if idle:
            self.reused += 1
            return idle.pop()
        self.created += 1
        return bytearray(self.size)

    def release(self, buf: bytearray) -> None:
        if not isinstance(buf, bytearray):
            raise TypeError(f"BufferPool.release() takes a bytearray, got {type(buf).__name__}")
        if len(buf) != self.size or len(self._idle) >= self.max_buffers:
            self.discarded += 1
            return
        if self._clear:
            buf[:] = bytes(self.size)
        self._idle.append(buf)

    @contextmanager
    def buffer(self) -> Iterator[bytearray]:
        buf = self.acquire()
        try:
            yield buf
        finally:
            self.release(buf)

    def statistics(self) -> BufferPoolStatistics:
        return BufferPoolStatistics(
            size=self.size,
            max_buffers=self.max_buffers,
            idle=len(self._idle),
            created=self.created,
            reused=self.reused,
            discarded=self.discarded,
        )

    def __repr__(self) -> str:
        return f"<BufferPool size={self.size} idle={len(self._idle)}/{self.max_buffers}>"
