"""Formats and sinks of the FlowCoro logger. Everything here runs on the writer thread."""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal, Protocol

__all__ = [
    "Sink",
    "StreamSink",
    "FileSink",
    "StdlibSink",
    "CallbackSink",
    "format_json",
    "format_console",
    "LEVEL_NAMES",
    "Format",
]

Format = Literal["json", "console"]
LEVEL_NAMES: dict[int, str] = {
    10: "debug",
    20: "info",
    30: "warning",
    40: "error",
    50: "critical",
}
_RESERVED = ("ts", "level", "logger", "event", "exc_info")


def level_name(level: int) -> str:
    return LEVEL_NAMES.get(level) or f"level{level}"


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _exc_text(exc_info: Any) -> str:
    return "".join(traceback.format_exception(*exc_info)).rstrip()


def format_json(record: dict[str, Any]) -> str:
    """One JSON object per line: ``ts`` (ISO 8601 UTC), ``level``, ``logger``, ``event``, fields."""
    out: dict[str, Any] = {
        "ts": _iso(record["ts"]),
        "level": level_name(record["level"]),
        "logger": record["logger"],
        "event": record["event"],
    }
    for key, value in record.items():
        if key not in _RESERVED:
            out[key] = value
    exc_info = record.get("exc_info")
    if exc_info:
        out["exception"] = _exc_text(exc_info)
    return json.dumps(out, default=repr, ensure_ascii=False)


def _console_value(value: Any) -> str:
    if isinstance(value, str):
        return value if value and " " not in value and "=" not in value else repr(value)
    return repr(value)


def format_console(record: dict[str, Any]) -> str:
    """``2026-01-01 12:00:00.123 INFO  name  event key=value ...`` plus any traceback."""
    stamp = datetime.fromtimestamp(record["ts"]).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    parts = [
        stamp,
        f"{level_name(record['level']).upper():<8}",
        record["logger"],
        record["event"],
    ]
    for key, value in record.items():
        if key not in _RESERVED:
            parts.append(f"{key}={_console_value(value)}")
    line = " ".join(parts)
    exc_info = record.get("exc_info")
    if exc_info:
        line += "\n" + _exc_text(exc_info)
    return line


_FORMATTERS: dict[str, Callable[[dict[str, Any]], str]] = {
    "json": format_json,
    "console": format_console,
}


def formatter(fmt: str) -> Callable[[dict[str, Any]], str]:
    try:
        return _FORMATTERS[fmt]
    except KeyError:
        raise ValueError(f"logger: 'format' must be 'json' or 'console', got {fmt!r}") from None


class Sink(Protocol):
    """Where records go. Called only from the writer thread, so it may block (it never blocks
    the event loop); ``flush`` is called after each batch, ``close`` at shutdown. A sink may
    also define ``after_fork()``: called in a forked child to drop state copied from the
    parent (pending lines the parent will write itself)."""

    def emit(self, record: dict[str, Any]) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class StreamSink:
    """Lines to a text stream (default ``sys.stderr``), in ``json`` or ``console`` format."""

    def __init__(self, stream: IO[str] | None = None, format: Format = "console") -> None:
        self._stream = stream
        self._format = formatter(format)

    def emit(self, record: dict[str, Any]) -> None:
        stream = self._stream if self._stream is not None else sys.stderr
        stream.write(self._format(record) + "\n")

    def flush(self) -> None:
        stream = self._stream if self._stream is not None else sys.stderr
        stream.flush()

    def close(self) -> None:
        self.flush()


class FileSink:
    """Lines appended to a file (JSON lines by default), written once per batch.

    Lines are collected in memory and written with one ``os.write`` on a descriptor opened with
    ``O_APPEND`` at each flush, so several processes (forked workers) can share the file without
    interleaving inside a batch, and a forked child never re-writes its parent's pending lines
    (``after_fork`` drops them in the child).
    """

    def __init__(self, path: str | Path, format: Format = "json") -> None:
        self._format = formatter(format)
        self.path = Path(path)
        self._fd: int | None = None
        self._pending: list[str] = []

    def emit(self, record: dict[str, Any]) -> None:
        self._pending.append(self._format(record) + "\n")

    def flush(self) -> None:
        if not self._pending:
            return
        data = "".join(self._pending).encode("utf-8")
        self._pending.clear()
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def after_fork(self) -> None:  # pragma: no cover - runs in forked children (tested there)
        self._pending.clear()


class CallbackSink:
    """Hands each record dict to ``callback`` (tests, custom shippers)."""

    def __init__(self, callback: Callable[[dict[str, Any]], None]) -> None:
        self._callback = callback

    def emit(self, record: dict[str, Any]) -> None:
        self._callback(record)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class StdlibSink:
    """Forwards records to the stdlib ``logging`` logger of the same name (and so its handlers).

    Records carry ``flowcoro_fields`` (the structured fields) and are marked so the stdlib ->
    FlowCoro bridge does not send them back.
    """

    def __init__(self, prefix: str = "") -> None:
        self._prefix = prefix

    def emit(self, record: dict[str, Any]) -> None:
        name = self._prefix + record["logger"]
        target = logging.getLogger(name)
        level = record["level"]
        if not target.isEnabledFor(level):
            return
        fields = {k: v for k, v in record.items() if k not in _RESERVED}
        message = record["event"]
        if fields:
            message += " " + " ".join(f"{k}={_console_value(v)}" for k, v in fields.items())
        rec = target.makeRecord(
            name, level, "(flowcoro)", 0, message, (), record.get("exc_info") or None
        )
        rec.created = record["ts"]
        rec.flowcoro_fields = fields
        rec.flowcoro_forwarded = True
        target.handle(rec)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


_report_lock = threading.Lock()


def report_sink_error(sink: object, exc: BaseException) -> None:
    """Last-resort report of a failing sink, straight to the real stderr."""
    with _report_lock:
        stream = sys.__stderr__
        if stream is not None:
            try:
                stream.write(f"flowcoro logger: sink {sink!r} failed: {exc!r}\n")
            except Exception:  # pragma: no cover - nowhere left to report to
                pass
