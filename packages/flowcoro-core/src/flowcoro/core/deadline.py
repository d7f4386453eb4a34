"""Deadlines carried in a context variable, so every layer below honours the caller's time.

``deadline(seconds)`` records an absolute expiry time (on the ``time.monotonic`` clock) in a
context variable. Nested deadlines take the earlier one: an inner ``deadline(10)`` inside an outer
``deadline(1)`` still expires after one second. The variable is copied into tasks spawned inside the
block (asyncio copies the context), so child tasks inherit the remaining time.

- ``with deadline(s):`` only carries the deadline: lower layers (HTTP client, DB, Redis, RPC, net
  connect) call ``effective_timeout(their_timeout)`` for each wait and raise ``DeadlineExceeded``
  once it has passed. Nothing is cancelled (a synchronous block cannot be interrupted).
- ``async with deadline(s):`` also cancels the block when the deadline expires and raises
  ``DeadlineExceeded`` (a ``TimeoutError``) from the ``async with`` statement. When an outer
  deadline fires first, the outermost expired block raises and the inner ones let the
  cancellation pass through, as with nested ``asyncio.timeout``.
"""

from __future__ import annotations

import asyncio
import math
import time
from contextvars import ContextVar, Token
from types import TracebackType

from flowcoro.core.errors import DeadlineExceeded

__all__ = ["deadline", "remaining", "effective_timeout", "current_deadline"]

_DEADLINE: ContextVar[float | None] = ContextVar("flowcoro_deadline", default=None)
_monotonic = time.monotonic


def current_deadline() -> float | None:
    """The absolute expiry time (``time.monotonic()`` clock) of the current deadline, or None."""
    return _DEADLINE.get()


def remaining() -> float | None:
    """Seconds left before the current deadline (0.0 once it passed), or None without one."""
    when = _DEADLINE.get()
    if when is None:
        return None
    left = when - _monotonic()
    return left if left > 0.0 else 0.0


def effective_timeout(timeout: float | None) -> float | None:
    """The smaller of ``timeout`` and ``remaining()`` (None when both are None).

    Raises ``DeadlineExceeded`` when the current deadline has already passed, so a layer that
    calls this before each wait never starts work its caller can no longer use.
    """
    when = _DEADLINE.get()
    if when is None:
        return timeout
    left = when - _monotonic()
    if left <= 0.0:
        raise DeadlineExceeded("the deadline of the calling context has expired")
    if timeout is None or left < timeout:
        return left
    return timeout


class deadline:  # used like a function: ``with deadline(2.0):``
    """Set a deadline ``seconds`` from now for the block (``with`` or ``async with``).

    ``seconds=None`` adds no deadline (an outer one still applies): handy to pass an optional
    timeout straight through. The object is single-use.
    """

    __slots__ = ("_expires_at", "_seconds", "_timeout", "_token")

    def __init__(self, seconds: float | None) -> None:
        if seconds is not None:
            if isinstance(seconds, bool) or not isinstance(seconds, int | float):
                raise TypeError(f"deadline: 'seconds' must be a number or None, got {seconds!r}")
            if math.isnan(seconds) or seconds < 0:
                raise ValueError(f"deadline: 'seconds' must be >= 0, got {seconds!r}")
        self._seconds = seconds
        self._token: Token[float | None] | None = None
        self._timeout: asyncio.Timeout | None = None
        self._expires_at: float | None = None

    @property
    def expires_at(self) -> float | None:
        """The effective absolute expiry (``time.monotonic`` clock) once entered, else None."""
        return self._expires_at

    def expired(self) -> bool:
        """True once the effective deadline of this block has passed."""
        return self._expires_at is not None and _monotonic() >= self._expires_at

    def __enter__(self) -> deadline:
        if self._token is not None:
            raise RuntimeError("deadline objects are single-use; make a new one per block")
        outer = _DEADLINE.get()
        when = outer
        if self._seconds is not None:
            mine = _monotonic() + self._seconds
            if outer is None or mine < outer:
                when = mine
        self._expires_at = when
        self._token = _DEADLINE.set(when)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            _DEADLINE.reset(self._token)

    async def __aenter__(self) -> deadline:
        self.__enter__()
        when = self._expires_at
        if when is not None:
            # Nested timers that fire together resolve like nested asyncio.timeout blocks: the
            # outermost expired block raises, the inner ones let the cancellation through.
            loop = asyncio.get_running_loop()
            self._timeout = asyncio.timeout_at(loop.time() + (when - _monotonic()))
            try:
                await self._timeout.__aenter__()
            except BaseException:  # pragma: no cover - asyncio.Timeout refuses a non-task
                self.__exit__(None, None, None)
                raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._timeout is not None:
                try:
                    await self._timeout.__aexit__(exc_type, exc, tb)
                except TimeoutError as timeout_exc:
                    if self._timeout.expired():
                        raise DeadlineExceeded(
                            f"deadline expired (block asked for {self._seconds!r}s)"
                        ) from timeout_exc
                    raise
        finally:
            self.__exit__(exc_type, exc, tb)
