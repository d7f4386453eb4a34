"""Which event loop to run: uvloop on Linux and macOS, asyncio's own loop otherwise.

The choice can be forced with the ``loop`` argument of `new_event_loop` / `run_server`, or the
``FLOWCORO_LOOP`` environment variable (the core ``loop`` setting: ``auto``, ``uvloop``,
``asyncio``). It is logged
once per process.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable

from flowcoro.net.errors import InvalidLimit

__all__ = ["LOOP_ENV", "loop_kind", "new_event_loop"]

LOOP_ENV = "FLOWCORO_LOOP"  # the core `loop` setting's variable
_KINDS = ("auto", "uvloop", "asyncio")
_logger = logging.getLogger("flowcoro.net")
_logged: set[str] = set()


def _uvloop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    if sys.platform not in ("linux", "darwin"):  # pragma: no cover - tests run on Linux
        return None
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def loop_kind(kind: str | None = None) -> str:
    """Resolve ``kind`` (argument, else ``FLOWCORO_LOOP``, else ``auto``) to
    ``"uvloop"`` or ``"asyncio"``; forcing ``uvloop`` where it is missing is an error."""
    chosen = (kind or os.environ.get(LOOP_ENV) or "auto").strip().lower()
    if chosen not in _KINDS:
        raise InvalidLimit("loop", f"must be one of {', '.join(_KINDS)}, got {chosen!r}")
    if chosen == "asyncio":
        return "asyncio"
    if _uvloop_factory() is not None:
        return "uvloop"
    if chosen == "uvloop":  # pragma: no cover - uvloop is a dependency on Linux
        raise InvalidLimit("loop", "uvloop was asked for but is not installed here")
    return "asyncio"  # pragma: no cover


def new_event_loop(kind: str | None = None) -> asyncio.AbstractEventLoop:
    """A new event loop of the resolved kind (see `loop_kind`); the choice is logged once."""
    resolved = loop_kind(kind)
    if resolved not in _logged:
        _logged.add(resolved)
        _logger.info("event loop: %s (pid %d)", resolved, os.getpid())
    factory = _uvloop_factory() if resolved == "uvloop" else None
    return factory() if factory is not None else asyncio.new_event_loop()
