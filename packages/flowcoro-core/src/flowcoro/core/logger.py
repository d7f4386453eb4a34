"""A structured logger that never makes the event loop wait on a sink.

    log = get_logger("shop.auth")
    log.info("user.login", user_id=7)
    with bind_context(request_id="r-1"):      # context fields, from a context variable
        log.warning("slow.query", ms=812)

How it works: a call checks the logger's level (a disabled level costs one comparison), then
appends one tuple ``(time, level, name, event, fields, context)`` to a bounded ``deque`` and
returns. A writer thread drains the deque in batches, builds the record dicts, runs the
processors, formats (JSON lines or human console) and writes to the sinks. The event loop never
formats, never does I/O and never takes a lock: ``deque.append`` is atomic under the GIL, and
the writer is woken (a ``threading.Event``) only when it was idle.

- **Bounded hand-off.** At most ``capacity`` records wait (default 10,000). When the sinks are
  too slow and the queue is full, new records are dropped and counted; the writer reports the
  count as a ``logger.dropped`` warning record (and ``statistics().dropped``).
- **Nothing queued is lost on a clean shutdown.** ``shutdown()`` (registered with ``atexit`` and
  called by ``flowcoro.core.run``) lets the writer drain everything queued, then closes sinks.
  ``flush(timeout)`` waits until everything queued before the call has been written.
- **Field values are formatted later, on the writer thread.** Pass values that are not mutated
  afterwards (numbers, strings, tuples), as for any asynchronous logger.
- **Extension points** (for ``flowcoro.observe`` and others): ``add_context_provider(fn)`` —
  ``fn()`` runs at the call site (so it sees the caller's context variables: current span ...)
  and returns a mapping merged into the record, e.g. ``{"trace_id": ..., "span_id": ...}``, or None.
  ``add_processor(fn)`` — ``fn(record_dict)`` runs on the writer thread before formatting and
  returns the (possibly changed) dict, or None to drop the record.
- **stdlib interop.** ``install_stdlib_bridge()`` routes stdlib ``logging`` records into this
  logger (they are queued like ours: third-party libraries stop blocking the loop too);
  ``StdlibSink`` forwards our records to stdlib handlers. Records never loop between the two.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any, NamedTuple

from flowcoro.core._logsinks import (
    LEVEL_NAMES,
    CallbackSink,
    FileSink,
    Format,
    Sink,
    StdlibSink,
    StreamSink,
    format_console,
    format_json,
    report_sink_error,
)

__all__ = [
    "DEBUG",
    "INFO",
    "WARNING",
    "ERROR",
    "CRITICAL",
    "Logger",
    "LoggerStatistics",
    "get_logger",
    "configure_logging",
    "bind_context",
    "bind",
    "context_fields",
    "add_context_provider",
    "add_processor",
    "flush",
    "shutdown",
    "statistics",
    "install_stdlib_bridge",
    "StdlibBridgeHandler",
    "Sink",
    "StreamSink",
    "FileSink",
    "StdlibSink",
    "CallbackSink",
    "format_json",
    "format_console",
]

DEBUG, INFO, WARNING, ERROR, CRITICAL = 10, 20, 30, 40, 50
_BY_NAME = {name: level for level, name in LEVEL_NAMES.items()} | {"warn": WARNING}
_BATCH = 1024
_YIELD_EVERY = 8  # records formatted between voluntary GIL releases by the writer
Items = tuple[tuple[str, Any], ...]

# Context fields are kept as a tuple of (key, value) pairs, not a dict: a queued record that holds
# only tuples of atomic values is untracked by the cyclic GC, so a long queue (a stuck sink)
# does not make the collector's full passes, which run on the event loop's thread too, slower.
_CONTEXT: ContextVar[Items] = ContextVar("flowcoro_log_context", default=())


def _level(value: int | str, field: str = "level") -> int:
    if isinstance(value, bool):
        raise TypeError(f"logger: {field!r} must be a level name or number, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.lower() in _BY_NAME:
        return _BY_NAME[value.lower()]
    raise ValueError(
        f"logger: {field!r} must be one of {sorted(_BY_NAME)} or a number, got {value!r}"
    )


class LoggerStatistics(NamedTuple):
    queued: int
    capacity: int
    written: int
    dropped: int
    sink_errors: int


class _Flush:
    """A marker put in the queue by ``flush()``: set when the writer reaches it."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


class _Core:
    """The process-wide queue, writer thread and configuration."""

    def __init__(self) -> None:
        self.queue: deque[Any] = deque()
        self.capacity = 10_000
        self.sinks: list[Sink] = [StreamSink(None, "console")]
        self.processors: list[Callable[[dict[str, Any]], dict[str, Any] | None]] = []
        self.providers: list[Callable[[], Mapping[str, Any] | None]] = []
        self.default_level = INFO
        self.levels: dict[str, int] = {}
        self.dropped = 0
        self.reported_dropped = 0
        self.written = 0
        self.sink_errors = 0
        self.sleeping = True  # True while the writer waits (or is not running): wake it
        self.stopping = False
        self.event = threading.Event()
        self.thread: threading.Thread | None = None
        self.start_lock = threading.Lock()

    # -- called by emitters (any thread) when the writer may be asleep

    def wake(self) -> None:
        thread = self.thread
        if thread is None or not thread.is_alive():
            with self.start_lock:
                if (self.thread is None or not self.thread.is_alive()) and not self.stopping:
                    self.thread = threading.Thread(
                        target=self.run, name="flowcoro-logger", daemon=True
                    )
                    self.thread.start()
        self.event.set()

    # -- the writer thread

    def run(self) -> None:
        queue = self.queue
        event = self.event
        while True:
            batch: list[Any] = []
            popleft = queue.popleft
            try:
                while len(batch) < _BATCH:
                    batch.append(popleft())
            except IndexError:
                pass
            if batch:
                self.sleeping = False
                self.write_batch(batch)
                continue
            self.report_dropped()
            if self.stopping:
                self.sleeping = True
                return
            self.sleeping = True
            if not queue:
                event.wait(0.5)
            event.clear()
            self.sleeping = False

    def write_batch(self, batch: list[Any]) -> None:
        sinks = self.sinks
        processors = self.processors
        count = 0
        for item in batch:
            if type(item) is _Flush:
                self.flush_sinks()
                item.done.set()
                continue
            ts, level, name, event, fields, context, exc_info = item
            built: dict[str, Any] = {"ts": ts, "level": level, "logger": name, "event": event}
            if context:
                built.update(context)
            if fields:
                built.update(fields)
            if exc_info is not None:
                built["exc_info"] = exc_info
            keep = True
            for processor in processors:
                try:
                    changed = processor(built)
                except Exception as exc:  # a broken processor must not lose the record
                    self.sink_errors += 1
                    report_sink_error(processor, exc)
                    continue
                if changed is None:
                    keep = False
                    break
                built = changed
            if keep:
                self.to_sinks(sinks, built)
            self.written += 1
            count += 1
            if count % _YIELD_EVERY == 0:
                time.sleep(0)  # let the event loop's thread take the GIL
        self.report_dropped()
        self.flush_sinks()

    def to_sinks(self, sinks: list[Sink], record: dict[str, Any]) -> None:
        for sink in sinks:
            try:
                sink.emit(record)
            except Exception as exc:
                self.sink_errors += 1
                report_sink_error(sink, exc)

    def flush_sinks(self) -> None:
        for sink in self.sinks:
            try:
                sink.flush()
            except Exception as exc:
                self.sink_errors += 1
                report_sink_error(sink, exc)

    def report_dropped(self) -> None:
        total = self.dropped
        if total > self.reported_dropped:
            delta = total - self.reported_dropped
            self.reported_dropped = total
            record = {
                "ts": time.time(),
                "level": WARNING,
                "logger": "flowcoro.logger",
                "event": "logger.dropped",
                "dropped": delta,
                "dropped_total": total,
                "capacity": self.capacity,
            }
            self.to_sinks(self.sinks, record)
            self.flush_sinks()


_core = _Core()
_loggers: dict[str, Logger] = {}


def _after_fork_in_child() -> None:  # pragma: no cover - runs in forked children (tested there)
    """A forked child (e.g. a server worker) gets a fresh writer: the parent's thread does not
    exist here, its lock or event may have been held at the fork, and the records queued
    before the fork are the parent's to write."""
    core = _core
    core.queue.clear()
    core.event = threading.Event()
    core.start_lock = threading.Lock()
    core.thread = None
    core.sleeping = True
    core.stopping = False
    core.reported_dropped = core.dropped
    for sink in core.sinks:
        reset = getattr(sink, "after_fork", None)
        if reset is not None:
            reset()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _emit(
    level: int,
    name: str,
    event: str,
    fields: dict[str, Any] | None,
    exc_info: Any = None,
) -> None:
    core = _core
    queue = core.queue
    if len(queue) >= core.capacity:
        core.dropped += 1
        return
    context = _CONTEXT.get()
    if core.providers:
        context = _provided(context, core.providers)
    items = tuple(fields.items()) if fields else None
    queue.append((time.time(), level, name, event, items, context, exc_info))
    if core.sleeping:
        core.wake()


def _provided(context: Items, providers: list[Callable[[], Mapping[str, Any] | None]]) -> Items:
    merged: dict[str, Any] | None = None
    for provider in providers:
        try:
            extra = provider()
        except Exception:
            continue
        if extra:
            if merged is None:
                merged = dict(context)
            merged.update(extra)
    return context if merged is None else tuple(merged.items())


class _Level:
    __slots__ = ("value",)

    def __init__(self, value: int) -> None:
        self.value = value


class Logger:
    """A named structured logger (from ``get_logger``); cheap to call, safe from any thread."""

    __slots__ = ("_fields", "_level", "name")

    def __init__(self, name: str, level: _Level, fields: Mapping[str, Any] | None = None) -> None:
        self.name = name
        self._level = level
        self._fields = dict(fields) if fields else None

    @property
    def level(self) -> int:
        return self._level.value

    def is_enabled_for(self, level: int) -> bool:
        return level >= self._level.value

    def bind(self, **fields: Any) -> Logger:
        """A logger with the same name and level that adds ``fields`` to every record."""
        merged = dict(self._fields or {})
        merged.update(fields)
        return Logger(self.name, self._level, merged)

    def debug(self, event: str, /, **fields: Any) -> None:
        if self._level.value <= DEBUG:
            bound = self._fields
            _emit(DEBUG, self.name, event, fields if bound is None else {**bound, **fields})

    def info(self, event: str, /, **fields: Any) -> None:
        if self._level.value <= INFO:
            bound = self._fields
            _emit(INFO, self.name, event, fields if bound is None else {**bound, **fields})

    def warning(self, event: str, /, **fields: Any) -> None:
        if self._level.value <= WARNING:
            self._slow(WARNING, event, fields, fields.pop("exc_info", None))

    def error(self, event: str, /, **fields: Any) -> None:
        if self._level.value <= ERROR:
            self._slow(ERROR, event, fields, fields.pop("exc_info", None))

    def exception(self, event: str, /, **fields: Any) -> None:
        """``error`` with the exception being handled attached (call it in ``except``)."""
        if self._level.value <= ERROR:
            fields.pop("exc_info", None)
            self._slow(ERROR, event, fields, True)

    def critical(self, event: str, /, **fields: Any) -> None:
        if self._level.value <= CRITICAL:
            self._slow(CRITICAL, event, fields, fields.pop("exc_info", None))

    def log(self, level: int, event: str, /, **fields: Any) -> None:
        if self._level.value <= level:
            self._slow(level, event, fields, fields.pop("exc_info", None))

    def _slow(self, level: int, event: str, fields: dict[str, Any], exc_info: Any) -> None:
        bound = self._fields
        merged = fields if bound is None else {**bound, **fields}
        _emit(level, self.name, event, merged, _exc_info(exc_info))

    def __repr__(self) -> str:
        return f"<Logger {self.name!r} level={LEVEL_NAMES.get(self.level, self.level)}>"


def _exc_info(value: Any) -> Any:
    if not value:
        return None
    if isinstance(value, BaseException):
        return (type(value), value, value.__traceback__)
    if isinstance(value, tuple):
        return value
    info = sys.exc_info()
    return info if info[0] is not None else None


def _level_for(name: str) -> int:
    levels = _core.levels
    probe = name
    while True:
        if probe in levels:
            return levels[probe]
        if "." not in probe:
            return _core.default_level
        probe = probe.rsplit(".", 1)[0]


def get_logger(name: str = "app") -> Logger:
    """The logger called ``name`` (one object per name; levels follow ``configure_logging``)."""
    logger = _loggers.get(name)
    if logger is None:
        logger = _loggers.setdefault(name, Logger(name, _Level(_level_for(name))))
    return logger


def configure_logging(
    *,
    level: int | str | None = None,
    format: Format | None = None,
    sinks: Iterable[Sink] | None = None,
    capacity: int | None = None,
    levels: Mapping[str, int | str] | None = None,
) -> None:
    """Configure the process-wide logger. Only the arguments given change.

    ``level`` is the default level (``"info"``); ``levels`` sets levels per logger name prefix
    (``{"flowcoro.db": "debug"}``); ``format`` replaces the sinks with one stderr sink in that
    format (``"console"`` or ``"json"``); ``sinks`` replaces the sinks; ``capacity`` bounds the
    hand-off queue (default 10,000 records).
    """
    core = _core
    if capacity is not None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"logger: 'capacity' must be an int >= 1, got {capacity!r}")
        core.capacity = capacity
    if format is not None:
        new_sinks: list[Sink] = [StreamSink(None, format)]
    elif sinks is not None:
        new_sinks = list(sinks)
    else:
        new_sinks = core.sinks
    if new_sinks is not core.sinks:
        if core.thread is not None and core.thread.is_alive():
            flush()
        old, core.sinks = core.sinks, new_sinks
        for sink in old:
            if sink not in new_sinks:
                try:
                    sink.close()
                except Exception as exc:
                    report_sink_error(sink, exc)
    if level is not None:
        core.default_level = _level(level)
    if levels is not None:
        core.levels = {
            prefix: _level(value, f"levels[{prefix}]") for prefix, value in levels.items()
        }
    for name, logger in _loggers.items():
        logger._level.value = _level_for(name)


class bind_context:  # used like a function
    """Add ``fields`` to every record logged in the current context (request id, trace id).

    Takes effect at once; used as ``with bind_context(request_id=...):`` the previous context is
    restored at the end of the block. Tasks created inside inherit the fields.
    """

    __slots__ = ("_token",)

    def __init__(self, **fields: Any) -> None:
        merged = dict(_CONTEXT.get())
        merged.update(fields)
        self._token: Token[Items] = _CONTEXT.set(tuple(merged.items()))

    def __enter__(self) -> bind_context:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _CONTEXT.reset(self._token)


bind = bind_context


def context_fields() -> Mapping[str, Any]:
    """The context fields in effect here."""
    return dict(_CONTEXT.get())


def add_context_provider(provider: Callable[[], Mapping[str, Any] | None]) -> None:
    """Register ``provider()``: called at each logging call; its mapping joins the record."""
    _core.providers.append(provider)


def remove_context_provider(provider: Callable[[], Mapping[str, Any] | None]) -> None:
    _core.providers.remove(provider)


def add_processor(processor: Callable[[dict[str, Any]], dict[str, Any] | None]) -> None:
    """Register ``processor(record) -> record | None`` (writer thread, before formatting)."""
    _core.processors.append(processor)


def remove_processor(processor: Callable[[dict[str, Any]], dict[str, Any] | None]) -> None:
    _core.processors.remove(processor)


def flush(timeout: float = 5.0) -> bool:
    """Block until every record queued before the call is written; False on timeout.

    Do not call it on the event loop in hot code: it waits for the sinks (``shutdown`` and the
    runtime call it when the loop is done).
    """
    core = _core
    marker = _Flush()
    core.queue.append(marker)  # may exceed capacity by one: a flush is never dropped
    core.wake()
    return marker.done.wait(timeout)


def shutdown(timeout: float = 5.0) -> bool:
    """Write everything queued, close the sinks and stop the writer (it restarts if used again).

    Returns False when the sinks did not finish within ``timeout``.
    """
    core = _core
    thread = core.thread
    ok = True
    if thread is not None and thread.is_alive():
        core.stopping = True
        core.event.set()
        thread.join(timeout)
        ok = not thread.is_alive()
    if ok:
        # Anything logged after the writer stopped (or with no writer ever) is written here.
        core.stopping = False
        core.thread = None
        leftovers = list(core.queue)
        core.queue.clear()
        if leftovers:
            core.write_batch(leftovers)
        core.report_dropped()
        for sink in core.sinks:
            try:
                sink.flush()
                sink.close()
            except Exception as exc:
                core.sink_errors += 1
                report_sink_error(sink, exc)
    core.sleeping = True
    return ok


def statistics() -> LoggerStatistics:
    core = _core
    return LoggerStatistics(
        queued=len(core.queue),
        capacity=core.capacity,
        written=core.written,
        dropped=core.dropped,
        sink_errors=core.sink_errors,
    )


class StdlibBridgeHandler(logging.Handler):
    """A stdlib ``logging.Handler`` that queues records into the FlowCoro logger (no I/O in
    the caller). The message is rendered with its ``%`` arguments; ``extra`` fields set with
    ``extra={"flowcoro": {...}}`` become structured fields."""

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "flowcoro_forwarded", False):
            return  # it came from us through StdlibSink: do not loop
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        extra = getattr(record, "flowcoro", None)
        fields = dict(extra) if isinstance(extra, Mapping) else None
        _emit(record.levelno, record.name, message, fields, record.exc_info or None)


def install_stdlib_bridge(
    level: int | str = INFO, logger: logging.Logger | None = None
) -> StdlibBridgeHandler:
    """Route stdlib ``logging`` records (root logger by default) into the FlowCoro logger."""
    target = logger if logger is not None else logging.getLogger()
    for handler in target.handlers:
        if isinstance(handler, StdlibBridgeHandler):
            return handler
    handler = StdlibBridgeHandler(_level(level))
    target.addHandler(handler)
    if target.level == logging.NOTSET or target.level > handler.level:
        target.setLevel(handler.level)
    return handler


atexit.register(shutdown)
