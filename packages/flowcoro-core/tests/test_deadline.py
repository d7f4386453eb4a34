from __future__ import annotations

import asyncio
import time

import pytest

from flowcoro.core.deadline import current_deadline, deadline, effective_timeout, remaining
from flowcoro.core.errors import DeadlineExceeded


def test_no_deadline() -> None:
    assert remaining() is None
    assert current_deadline() is None
    assert effective_timeout(None) is None
    assert effective_timeout(3.0) == 3.0


def test_sync_deadline_sets_and_restores() -> None:
    with deadline(5.0) as d:
        left = remaining()
        assert left is not None
        assert 4.5 < left <= 5.0
        assert d.expires_at is not None
        assert not d.expired()
        assert effective_timeout(10.0) == pytest.approx(left, abs=0.1)
        assert effective_timeout(1.0) == 1.0
        assert effective_timeout(None) == pytest.approx(left, abs=0.1)
    assert remaining() is None


def test_nested_takes_earlier() -> None:
    with deadline(1.0):
        outer = current_deadline()
        with deadline(10.0):
            assert current_deadline() == outer
        with deadline(0.5):
            inner = current_deadline()
            assert inner is not None
            assert outer is not None
            assert inner < outer
        with deadline(None):
            assert current_deadline() == outer
        assert current_deadline() == outer


def test_expired_raises_in_effective_timeout() -> None:
    with deadline(0.0) as d:
        assert remaining() == 0.0
        assert d.expired()
        with pytest.raises(DeadlineExceeded):
            effective_timeout(1.0)


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="seconds"):
        deadline(-1)
    with pytest.raises(ValueError, match="seconds"):
        deadline(float("nan"))
    with pytest.raises(TypeError, match="seconds"):
        deadline("1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="seconds"):
        deadline(True)
    d = deadline(1)
    with d, pytest.raises(RuntimeError, match="single-use"), d:
        pass


def test_deadline_is_a_timeout_error() -> None:
    assert issubclass(DeadlineExceeded, TimeoutError)


async def test_async_deadline_cancels_block() -> None:
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        async with deadline(0.05):
            await asyncio.sleep(10)
    assert time.monotonic() - started < 1.0
    assert remaining() is None


async def test_async_deadline_not_expired() -> None:
    async with deadline(5) as d:
        await asyncio.sleep(0)
        assert remaining() is not None
    assert not d.expired()


async def test_nested_async_outer_fires() -> None:
    hit = []

    async def body() -> None:
        async with deadline(0.05):
            try:
                async with deadline(5):
                    await asyncio.sleep(10)
            except asyncio.CancelledError:
                hit.append("inner-cancelled")
                raise

    with pytest.raises(DeadlineExceeded):
        await body()
    assert hit == ["inner-cancelled"]


async def test_nested_async_inner_fires_outer_continues() -> None:
    async with deadline(5):
        with pytest.raises(DeadlineExceeded):
            async with deadline(0.02):
                await asyncio.sleep(10)
        await asyncio.sleep(0)
        assert remaining() is not None


async def test_sync_outer_async_inner() -> None:
    with deadline(0.05), pytest.raises(DeadlineExceeded):
        async with deadline(None):
            await asyncio.sleep(10)


async def test_child_task_inherits_deadline() -> None:
    async def child() -> float | None:
        return remaining()

    async with deadline(2):
        left = await asyncio.create_task(child())
    assert left is not None
    assert left <= 2


async def test_external_cancel_is_not_deadline() -> None:
    async def body() -> None:
        async with deadline(5):
            await asyncio.sleep(10)

    task = asyncio.create_task(body())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_plain_timeout_error_inside_passes_through() -> None:
    with pytest.raises(TimeoutError) as info:
        async with deadline(5):
            raise TimeoutError("mine")
    assert not isinstance(info.value, DeadlineExceeded)
