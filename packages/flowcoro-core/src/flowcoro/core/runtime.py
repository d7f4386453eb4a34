"""``run(main)``: start the event loop, handle SIGINT/SIGTERM, shut down gracefully.

- The loop is uvloop when it is installed (and ``use_uvloop`` is not False), asyncio otherwise;
  one log line (``runtime.loop``) says which.
- The first SIGINT or SIGTERM starts a graceful shutdown: ``on_signal`` callbacks run (e.g. flip
  readiness with ``app.begin_shutdown()``), ``shutdown_requested()`` turns True and
  ``wait_shutdown()`` returns, then the main task is cancelled so its ``finally`` blocks and
  ``async with`` exits run (close servers, drain connections, stop components). They get
  ``drain_timeout`` seconds (default 30). A second signal, or the end of the drain timeout,
  forces the exit at once (exit status 128 + signal number) after flushing the log.
- A signal-driven exit that completed in time raises ``SystemExit(128 + signal number)`` from
  ``run()``, so ``flowcoro serve`` exits with the conventional status. Otherwise ``run`` returns
  what ``main`` returned (or raises what it raised).
- At the end, offload pools are stopped and the logger is flushed: nothing queued is lost.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from flowcoro.core import logger as _logger
from flowcoro.core.offload import shutdown_offload

__all__ = ["run", "loop_factory", "shutdown_requested", "wait_shutdown", "request_shutdown"]

T = TypeVar("T")
_log = _logger.get_logger("flowcoro.runtime")


def loop_factory(
    use_uvloop: bool | None = None,
) -> tuple[str, Callable[[], asyncio.AbstractEventLoop]]:
    """``(name, factory)`` of the event loop ``run`` would use."""
    if use_uvloop is not False:
        try:
            import uvloop
        except ImportError:
            if use_uvloop:
                raise RuntimeError("run(use_uvloop=True) but uvloop is not installed") from None
        else:
            version = getattr(uvloop, "__version__", "?")
            return f"uvloop {version}", uvloop.new_event_loop
    return "asyncio", asyncio.new_event_loop


class _Shutdown:
    """Per-run shutdown state, reachable from the loop through ``_current``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, main: asyncio.Task[Any]) -> None:
        self.loop = loop
        self.main = main
        self.event = asyncio.Event()
        self.signum = 0
        self.timer: asyncio.TimerHandle | None = None


_current: _Shutdown | None = None
_exit: Callable[[int], Any] = os._exit  # replaced in tests


def shutdown_requested() -> bool:
    """True once a shutdown signal arrived in the current ``run``."""
    return _current is not None and _current.event.is_set()


async def wait_shutdown() -> None:
    """Return when a shutdown signal arrives (for mains that drain on their own)."""
    if _current is None:
        raise RuntimeError("wait_shutdown() outside flowcoro.core.run()")
    await _current.event.wait()


def request_shutdown(signum: int = signal.SIGTERM) -> None:
    """Start the graceful shutdown as if ``signum`` arrived (on the loop's thread)."""
    if _current is None:
        raise RuntimeError("request_shutdown() outside flowcoro.core.run()")
    _on_signal(_current, signum, _current_callbacks, _current_drain)


_current_callbacks: list[Callable[[], object]] = []
_current_drain = 30.0


def _on_signal(
    state: _Shutdown, signum: int, callbacks: list[Callable[[], object]], drain: float
) -> None:
    name = signal.Signals(signum).name
    if state.event.is_set():
        _log.error("runtime.forced_exit", signal=name, reason="second signal")
        _force(128 + signum)
        return
    state.signum = signum
    state.event.set()
    _log.warning("runtime.shutdown", signal=name, drain_timeout=drain)
    for callback in callbacks:
        try:
            result = callback()
            if asyncio.iscoroutine(result):
                state.loop.create_task(result)
        except Exception:
            _log.exception("runtime.on_signal.failed", callback=repr(callback))
    state.main.cancel()
    state.timer = state.loop.call_later(drain, _drain_expired, signum, drain)


def _drain_expired(signum: int, drain: float) -> None:
    _log.error("runtime.forced_exit", reason="drain timeout", drain_timeout=drain)
    _force(128 + signum)


def _force(status: int) -> None:
    _logger.flush(1.0)
    _exit(status)


def run(
    main: Coroutine[Any, Any, T] | Callable[[], Awaitable[T]],
    *,
    use_uvloop: bool | None = None,
    drain_timeout: float = 30.0,
    on_signal: list[Callable[[], object]] | None = None,
    handle_signals: bool = True,
    debug: bool | None = None,
) -> T:
    """Run ``main`` (a coroutine, or an async callable) to completion; see the module docstring."""
    global _current, _current_callbacks, _current_drain
    if not drain_timeout > 0 or _current is not None:
        if asyncio.iscoroutine(main):
            main.close()
        if _current is not None:
            raise RuntimeError("run() is already running")
        raise ValueError(f"run: 'drain_timeout' must be > 0, got {drain_timeout!r}")
    try:
        name, factory = loop_factory(use_uvloop)
    except BaseException:
        if asyncio.iscoroutine(main):
            main.close()
        raise
    callbacks = list(on_signal or ())

    async def wrapper() -> T:
        global _current
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        state = _Shutdown(loop, task)
        _current = state
        _log.info("runtime.loop", loop=name, pid=os.getpid())
        installed: list[int] = []
        if handle_signals:
            for signum in (int(signal.SIGINT), int(signal.SIGTERM)):
                try:
                    loop.add_signal_handler(
                        signum, _on_signal, state, signum, callbacks, drain_timeout
                    )
                except (NotImplementedError, RuntimeError, ValueError):  # pragma: no cover
                    continue  # not the main thread, or a platform without signals
                installed.append(signum)
        try:
            coro = main if asyncio.iscoroutine(main) else main()
            try:
                return await coro
            except asyncio.CancelledError:
                if state.signum and task.uncancel() == 0:
                    raise SystemExit(128 + state.signum) from None
                raise
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)
            if state.timer is not None:
                state.timer.cancel()
            _current = None

    _current_callbacks = callbacks
    _current_drain = drain_timeout
    try:
        with asyncio.Runner(loop_factory=factory, debug=debug) as runner:
            return runner.run(wrapper())
    finally:
        shutdown_offload(wait=True)
        _logger.flush(5.0)
