"""A fixed-capacity ring buffer (recent events, samples, last-N logs).

``RingBuffer(capacity, overflow="overwrite")`` keeps the newest ``capacity`` items: a push into a
full buffer silently overwrites the oldest one and counts it (``overwritten``).
``overflow="reject"`` refuses the push instead and raises ``WouldBlock`` naming the capacity.
Plain synchronous container built on ``collections.deque``: no awaits, no locks. Under the GIL a
single ``push`` or ``pop`` is atomic, so one producer thread and one consumer thread may share it;
``overwritten`` may under-count when several threads push at once (and everything but the deque
operations themselves needs care on free-threaded CPython).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from typing import Generic, Literal, TypeVar

from flowcoro.core.errors import WouldBlock

__all__ = ["RingBuffer"]

T = TypeVar("T")
Overflow = Literal["overwrite", "reject"]


class RingBuffer(Generic[T]):
    """Newest ``capacity`` items; see the module docstring for the overflow policies."""

    __slots__ = ("_capacity", "_items", "_overflow", "overwritten")

    def __init__(self, capacity: int, overflow: Overflow = "overwrite") -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"RingBuffer: 'capacity' must be an int >= 1, got {capacity!r}")
        if overflow not in ("overwrite", "reject"):
            raise ValueError(
                f"RingBuffer: 'overflow' must be 'overwrite' or 'reject', got {overflow!r}"
            )
        self._capacity = capacity
        self._overflow = overflow
        self._items: deque[T] = deque(maxlen=capacity if overflow == "overwrite" else None)
        self.overwritten = 0

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def overflow(self) -> Overflow:
        return self._overflow

    @property
    def full(self) -> bool:
        return len(self._items) >= self._capacity

    def push(self, item: T) -> None:
        """Add ``item`` as the newest (overwriting the oldest, or ``WouldBlock``, when full)."""
        items = self._items
        if len(items) >= self._capacity:
            if self._overflow == "reject":
                raise WouldBlock(f"ring buffer is full (capacity={self._capacity})")
            self.overwritten += 1
        items.append(item)

    def extend(self, items: Iterable[T]) -> None:
        for item in items:
            self.push(item)

    def pop(self) -> T:
        """Remove and return the oldest item (``IndexError`` when empty)."""
        try:
            return self._items.popleft()
        except IndexError:
            raise IndexError("pop from an empty RingBuffer") from None

    def pop_newest(self) -> T:
        try:
            return self._items.pop()
        except IndexError:
            raise IndexError("pop from an empty RingBuffer") from None

    def peek(self) -> T:
        """The oldest item, left in place (``IndexError`` when empty)."""
        try:
            return self._items[0]
        except IndexError:
            raise IndexError("peek into an empty RingBuffer") from None

    def snapshot(self) -> list[T]:
        """The items, oldest first."""
        return list(self._items)

    def clear(self) -> None:
        self._items.clear()

    def __getitem__(self, index: int) -> T:
        return self._items[index]

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[T]:
        return iter(list(self._items))

    def __bool__(self) -> bool:
        return bool(self._items)

    def __repr__(self) -> str:
        return (
            f"<RingBuffer {len(self._items)}/{self._capacity} overflow={self._overflow!r} "
            f"overwritten={self.overwritten}>"
        )
