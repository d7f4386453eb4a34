from __future__ import annotations

import pytest

from flowcoro.core.errors import WouldBlock
from flowcoro.core.ring import RingBuffer


def test_overwrite_keeps_newest() -> None:
    ring: RingBuffer[int] = RingBuffer(3)
    assert not ring
    ring.extend(range(5))
    assert ring.snapshot() == [2, 3, 4]
    assert list(ring) == [2, 3, 4]
    assert ring.overwritten == 2
    assert ring.full
    assert len(ring) == 3
    assert ring[0] == 2
    assert ring[-1] == 4
    assert ring.peek() == 2
    assert ring.pop() == 2
    assert ring.pop_newest() == 4
    assert ring.capacity == 3
    assert ring.overflow == "overwrite"
    assert "overwritten=2" in repr(ring)
    ring.clear()
    assert len(ring) == 0


def test_reject_policy() -> None:
    ring: RingBuffer[str] = RingBuffer(2, overflow="reject")
    ring.push("a")
    ring.push("b")
    with pytest.raises(WouldBlock, match="capacity=2"):
        ring.push("c")
    assert ring.snapshot() == ["a", "b"]
    assert ring.overwritten == 0


def test_empty_and_bad_arguments() -> None:
    ring: RingBuffer[int] = RingBuffer(1)
    with pytest.raises(IndexError):
        ring.pop()
    with pytest.raises(IndexError):
        ring.pop_newest()
    with pytest.raises(IndexError):
        ring.peek()
    for bad in (0, -1, True, "3"):
        with pytest.raises(ValueError, match="capacity"):
            RingBuffer(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="overflow"):
        RingBuffer(2, overflow="drop")  # type: ignore[arg-type]
