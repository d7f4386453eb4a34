"""`run_server`: the blocking entry point — one process, or N forked workers with their own
``SO_REUSEPORT`` sockets, supervised (restart with backoff, SIGTERM forwarded for a graceful drain,
a non-zero exit when workers keep crashing). Each process runs its own event loop."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import logging
import os
import signal
import socket
import ssl as _ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from types import FrameType
from typing import Any

from flowcoro.core.plugins import get_plugins
from flowcoro.net._sockets import reserve_port, unix_socket
from flowcoro.net.errors import InvalidLimit
from flowcoro.net.limits import DrainStats, Limits
from flowcoro.net.loop import new_event_loop
from flowcoro.net.server import ConnectionHandler, ProtocolFactory, Server, start_server

__all__ = ["run_server"]

_logger = logging.getLogger("flowcoro.net")

Build = Callable[
    [], "ProtocolFactory | ConnectionHandler | Awaitable[ProtocolFactory | ConnectionHandler]"
]
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@dataclass(frozen=True)
class _Config:
    build: Build
    host: str | Sequence[str] | None
    port: int | None
    uds: str | None
    ssl: _ssl.SSLContext | None
    reuse_port: bool
    backlog: int
    limits: Limits | None
    drain_timeout: float | None
    on_started: Callable[[Server], Any] | None
    on_shutdown_begin: Callable[[], Any] | None
    on_stopped: Callable[[DrainStats], Any] | None
    loop: str | None
    sock: socket.socket | None = None


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def _serve(cfg: _Config) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in _STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    try:
        target = await _maybe_await(cfg.build())
        server = await start_server(
            target,
            host=cfg.host,
            port=cfg.port if cfg.sock is None else None,
            uds=cfg.uds if cfg.sock is None else None,
            sock=cfg.sock,
            ssl=cfg.ssl,
            reuse_port=cfg.reuse_port,
            backlog=cfg.backlog,
            limits=cfg.limits,
        )
        _logger.info("pid %d serving on %s", os.getpid(), server.addresses)
        if cfg.on_started is not None:
            await _maybe_await(cfg.on_started(server))
        await stop.wait()
        _logger.info("pid %d: shutdown requested, draining", os.getpid())
        if cfg.on_shutdown_begin is not None:
            await _maybe_await(cfg.on_shutdown_begin())
        stats = await server.shutdown(cfg.drain_timeout)
        _logger.info(
            "pid %d stopped: %d connections, %d drained, %d cut in %.2fs",
            os.getpid(),
            stats.connections,
            stats.drained,
            stats.cut,
            stats.duration,
        )
        if cfg.on_stopped is not None:
            await _maybe_await(cfg.on_stopped(stats))
        return 0
    finally:
        for signum in _STOP_SIGNALS:
            loop.remove_signal_handler(signum)


def _run_in_process(cfg: _Config) -> int:
    """Serve in this process on a fresh loop until SIGTERM/SIGINT; 1 if serving failed."""
    try:
        with asyncio.Runner(loop_factory=lambda: new_event_loop(cfg.loop)) as runner:
            return runner.run(_serve(cfg))
    except Exception:
        _logger.exception("pid %d: server failed", os.getpid())
        return 1


class _Supervisor:
    def __init__(
        self, cfg: _Config, workers: int, max_restarts: int, restart_window: float
    ) -> None:
        self.cfg = cfg
        self.workers = workers
        self.max_restarts = max_restarts
        self.restart_window = restart_window
        self.pids: dict[int, int] = {}  # pid -> slot
        self.started: dict[int, float] = {}  # slot -> start time
        self.failures: dict[int, int] = collections.defaultdict(int)
        self.restart_at: dict[int, float] = dict.fromkeys(range(workers), 0.0)
        self.crashes: collections.deque[float] = collections.deque()
        self.stop_requested = False
        self.status = 0

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stop_requested = True

    def run(self) -> int:
        previous = {s: signal.signal(s, self._on_signal) for s in _STOP_SIGNALS}
        try:
            self._loop()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        return self.status

    def _spawn(self, slot: int) -> None:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child, which coverage does not follow
            code = 1
            try:
                for signum in _STOP_SIGNALS:
                    signal.signal(signum, signal.SIG_DFL)
                code = _run_in_process(self.cfg)
            finally:
                os._exit(code)
        self.pids[pid] = slot
        self.started[slot] = time.monotonic()
        _logger.info("worker %d started (pid %d)", slot, pid)

    def _reap(self, stopping: bool) -> None:
        while self.pids:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:  # pragma: no cover - only our children are waited for
                self.pids.clear()
                return
            if pid == 0:
                return
            slot = self.pids.pop(pid, None)
            if slot is None:  # pragma: no cover - a child we did not start
                continue
            code = os.waitstatus_to_exitcode(status)
            if stopping:
                if code != 0:
                    self.status = 1
                continue
            now = time.monotonic()
            lived = now - self.started.get(slot, now)
            if lived > self.restart_window:
                self.failures[slot] = 0
            self.failures[slot] += 1
            delay = min(0.1 * 2 ** (self.failures[slot] - 1), 5.0)
            self.restart_at[slot] = now + delay
            self.crashes.append(now)
            while self.crashes and self.crashes[0] < now - self.restart_window:
                self.crashes.popleft()
            _logger.error(
                "worker %d (pid %d) died with status %d after %.1fs; restarting in %.1fs",
                slot,
                pid,
                code,
                lived,
                delay,
            )
            if len(self.crashes) > self.max_restarts:
                _logger.critical(
                    "workers crashed %d times within %gs (max_restarts=%d): giving up",
                    len(self.crashes),
                    self.restart_window,
                    self.max_restarts,
                )
                self.status = 1
                self.stop_requested = True

    def _signal_all(self, signum: int) -> None:
        for pid in list(self.pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def _loop(self) -> None:
        stopping = False
        kill_at = 0.0
        while True:
            self._reap(stopping)
            now = time.monotonic()
            if self.stop_requested and not stopping:
                stopping = True
                drain = self.cfg.limits.drain_timeout if self.cfg.limits else Limits().drain_timeout
                if self.cfg.drain_timeout is not None:
                    drain = self.cfg.drain_timeout
                kill_at = now + drain + 10.0
                _logger.info("stopping %d workers (graceful drain)", len(self.pids))
                self._signal_all(signal.SIGTERM)
            if stopping:
                if not self.pids:
                    return
                if now > kill_at:  # pragma: no cover - a worker ignoring its drain bound
                    _logger.error("workers did not stop in time: killing %s", list(self.pids))
                    self._signal_all(signal.SIGKILL)
                    kill_at = now + 3600
            else:
                running = set(self.pids.values())
                for slot in range(self.workers):
                    if slot not in running and now >= self.restart_at[slot]:
                        self._spawn(slot)
            time.sleep(0.02)


def run_server(
    build: Build,
    *,
    workers: int = 1,
    host: str | Sequence[str] | None = None,
    port: int | None = None,
    uds: str | None = None,
    ssl: _ssl.SSLContext | None = None,
    reuse_port: bool | None = None,
    backlog: int = 1024,
    limits: Limits | None = None,
    drain_timeout: float | None = None,
    on_started: Callable[[Server], Any] | None = None,
    on_shutdown_begin: Callable[[], Any] | None = None,
    on_stopped: Callable[[DrainStats], Any] | None = None,
    loop: str | None = None,
    max_restarts: int = 5,
    restart_window: float = 60.0,
) -> int:
    """Serve until SIGTERM or SIGINT, then drain gracefully; returns the exit status.

    In every serving process, on a fresh event loop (``loop``: "auto", "uvloop", "asyncio"),
    ``build()`` (may be async) returns the protocol factory or async connection handler; then
    ``on_started(server)``; on the signal ``on_shutdown_begin()`` (flip readiness), the drain
    (``drain_timeout``, default ``limits.drain_timeout``), ``on_stopped(stats)``. The callbacks
    may be async.

    ``workers > 1`` forks that many workers, each binding its own ``SO_REUSEPORT`` socket to
    ``port`` (so the kernel spreads connections evenly; with ``port=0`` the supervisor picks the
    port first); a Unix socket is made once and inherited. A dead worker is restarted after a
    backoff (0.1 s doubling to 5 s); more than ``max_restarts`` crashes within
    ``restart_window`` seconds stop everything with status 1. SIGTERM/SIGINT to the supervisor
    is forwarded to every worker, which drains; workers still alive 10 s after the drain
    timeout are killed.
    """
    if workers < 1:
        raise InvalidLimit("workers", f"must be >= 1, got {workers!r}")
    if max_restarts < 0:
        raise InvalidLimit("max_restarts", f"must be >= 0, got {max_restarts!r}")
    if port is None and uds is None:
        raise InvalidLimit("port", "give port, uds or both")
    cfg = _Config(
        build=build,
        host=host,
        port=port,
        uds=uds,
        ssl=ssl,
        reuse_port=bool(reuse_port) if reuse_port is not None else workers > 1,
        backlog=backlog,
        limits=limits,
        drain_timeout=drain_timeout,
        on_started=on_started,
        on_shutdown_begin=on_shutdown_begin,
        on_stopped=on_stopped,
        loop=loop,
    )
    if workers == 1:
        return _run_in_process(cfg)
    if port is not None and uds is not None:
        raise InvalidLimit("uds", "with workers > 1 give either port or uds")
    reserved: socket.socket | None = None
    shared: socket.socket | None = None
    try:
        if uds is not None:
            shared = unix_socket(uds, backlog=backlog)
            cfg = replace(cfg, sock=shared, reuse_port=False)
        elif port == 0:
            first = host if host is None or isinstance(host, str) else host[0]
            reserved, chosen = reserve_port(first, 0)
            cfg = replace(cfg, port=chosen)
            _logger.info("workers will listen on port %d", chosen)
        get_plugins().hook.flowcoro_net_workers_starting(workers=workers)
        return _Supervisor(cfg, workers, max_restarts, restart_window).run()
    finally:
        if reserved is not None:
            reserved.close()
        if shared is not None:
            shared.close()
            with contextlib.suppress(OSError):
                os.unlink(uds)  # type: ignore[arg-type]
