from __future__ import annotations

import pytest

from flowcoro.core.buffers import BufferPool


def test_reuse_and_statistics() -> None:
    pool = BufferPool(16, max_buffers=1)
    a = pool.acquire()
    b = pool.acquire()
    assert len(a) == 16
    assert a is not b
    pool.release(a)
    pool.release(b)  # over max_buffers: discarded
    with pool.buffer() as c:
        assert c is a
        c[0:3] = b"abc"
    s = pool.statistics()
    assert (s.created, s.reused, s.discarded, s.idle) == (2, 1, 1, 1)
    assert pool.acquire()[0:3] == b"abc"  # not cleared by default
    assert "size=16" in repr(pool)


def test_resized_buffer_is_not_kept_and_clear_on_release() -> None:
    pool = BufferPool(8, clear_on_release=True)
    buf = pool.acquire()
    del buf[4:]
    pool.release(buf)
    assert pool.statistics().idle == 0
    buf2 = pool.acquire()
    buf2[:] = b"x" * 8
    pool.release(buf2)
    assert pool.acquire() == bytearray(8)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="size"):
        BufferPool(0)
    with pytest.raises(ValueError, match="max_buffers"):
        BufferPool(8, max_buffers=-1)
    with pytest.raises(TypeError, match="bytearray"):
        BufferPool(8).release(b"12345678")  # type: ignore[arg-type]
