from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowcoro.core import logger as L


class Collect:
    """A sink that keeps every record; optionally blocks until released."""

    def __init__(self, block: bool = False) -> None:
        self.records: list[dict[str, Any]] = []
        self.gate = threading.Event()
        if not block:
            self.gate.set()
        self.entered = threading.Event()
        self.closed = False

    def emit(self, record: dict[str, Any]) -> None:
        self.entered.set()
        self.gate.wait()
        self.records.append(record)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def events(self) -> list[str]:
        return [r["event"] for r in self.records]


@pytest.fixture
def sink() -> Iterator[Collect]:
    collect = Collect()
    L.configure_logging(sinks=[collect], level="info", levels={}, capacity=10_000)
    yield collect
    L.shutdown()
    L._core.dropped = L._core.reported_dropped = 0
    L._core.processors.clear()
    L._core.providers.clear()
    L.configure_logging(sinks=[L.StreamSink(None, "console")], level="info", levels={})


def test_records_fields_and_levels(sink: Collect) -> None:
    log = L.get_logger("t.basic")
    assert L.get_logger("t.basic") is log
    log.debug("hidden", a=1)
    log.info("user.login", user_id=7)
    log.warning("warn")
    log.error("err", code=5)
    log.critical("crit")
    log.log(L.ERROR, "custom")
    log.log(5, "below")
    assert L.flush()
    assert sink.events() == ["user.login", "warn", "err", "crit", "custom"]
    first = sink.records[0]
    assert first["user_id"] == 7
    assert first["level"] == L.INFO
    assert first["logger"] == "t.basic"
    assert abs(first["ts"] - time.time()) < 5
    assert repr(log) == "<Logger 't.basic' level=info>"
    assert log.level == L.INFO
    assert log.is_enabled_for(L.WARNING)
    assert not log.is_enabled_for(L.DEBUG)


def test_per_prefix_levels_apply_to_existing_loggers(sink: Collect) -> None:
    db = L.get_logger("t.db.pool")
    web = L.get_logger("t.web")
    L.configure_logging(level="warning", levels={"t.db": "debug"})
    db.debug("db.debug")
    web.info("web.info")
    web.warning("web.warning")
    L.flush()
    assert sink.events() == ["db.debug", "web.warning"]
    L.configure_logging(level=20, levels={})
    assert db.level == L.INFO


def test_bind_context_and_bound_logger(sink: Collect) -> None:
    log = L.get_logger("t.ctx").bind(service="shop")
    with L.bind_context(request_id="r-1"):
        assert L.context_fields() == {"request_id": "r-1"}
        with L.bind(trace_id="t-9"):
            log.info("inner", n=1)
        log.info("outer")
    log.warning("after", exc_info=None)
    L.flush()
    inner, outer, after = sink.records
    assert inner["request_id"] == "r-1"
    assert inner["trace_id"] == "t-9"
    assert inner["service"] == "shop"
    assert inner["n"] == 1
    assert "trace_id" not in outer
    assert outer["request_id"] == "r-1"
    assert "request_id" not in after
    assert after["service"] == "shop"


async def test_context_is_inherited_by_tasks(sink: Collect) -> None:
    log = L.get_logger("t.task")

    async def child() -> None:
        log.info("child")

    with L.bind_context(request_id="r-2"):
        await asyncio.create_task(child())
    L.flush()
    assert sink.records[-1]["request_id"] == "r-2"


def test_exceptions(sink: Collect) -> None:
    log = L.get_logger("t.exc")
    try:
        raise ValueError("bad")
    except ValueError as exc:
        log.exception("failed", step=1)
        log.error("explicit", exc_info=exc)
        log.warning("tuple", exc_info=(type(exc), exc, exc.__traceback__))
    log.error("nothing-active", exc_info=True)
    L.flush()
    failed, explicit, as_tuple, nothing = sink.records
    assert failed["exc_info"][0] is ValueError
    assert explicit["exc_info"][1].args == ("bad",)
    assert as_tuple["exc_info"][0] is ValueError
    assert "exc_info" not in nothing
    line = L.format_json(failed)
    assert "ValueError: bad" in json.loads(line)["exception"]
    assert "ValueError: bad" in L.format_console(failed)


def test_formats() -> None:
    record = {
        "ts": 1_700_000_000.25,
        "level": L.WARNING,
        "logger": "svc",
        "event": "disk.full",
        "path": "/var/x y",
        "pct": 97,
        "tag": "a",
        "obj": object(),
    }
    data = json.loads(L.format_json(record))
    assert data["ts"] == "2023-11-14T22:13:20.250000Z"
    assert data["level"] == "warning"
    assert data["event"] == "disk.full"
    assert data["pct"] == 97
    assert data["obj"].startswith("<object")
    line = L.format_console(record)
    assert "WARNING" in line
    assert "svc disk.full" in line
    assert "path='/var/x y'" in line
    assert "pct=97 tag=a" in line
    custom = dict(record, level=25)
    assert json.loads(L.format_json(custom))["level"] == "level25"


def test_stream_and_file_sinks(tmp_path: Path) -> None:
    buf = io.StringIO()
    path = tmp_path / "app.log"
    file_sink = L.FileSink(path)
    L.configure_logging(sinks=[L.StreamSink(buf, "json"), file_sink])
    try:
        L.get_logger("t.sinks").info("written", k="v")
        L.flush()
        assert json.loads(buf.getvalue())["k"] == "v"
        assert json.loads(path.read_text())["event"] == "written"
    finally:
        L.configure_logging(format="console")  # closes the file sink
    assert file_sink._fd is None
    with pytest.raises(ValueError, match="format"):
        L.StreamSink(buf, "xml")  # type: ignore[arg-type]


def test_processors_and_providers(sink: Collect) -> None:
    def add_host(record: dict[str, Any]) -> dict[str, Any] | None:
        if record["event"] == "secret":
            return None
        record["host"] = "h1"
        return record

    def broken(record: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("processor bug")

    def provider() -> dict[str, Any]:
        return {"trace_id": "abc"}

    def empty_provider() -> None:
        return None

    def failing_provider() -> dict[str, Any]:
        raise RuntimeError("no span")

    for fn in (add_host, broken):
        L.add_processor(fn)
    for p in (provider, empty_provider, failing_provider):
        L.add_context_provider(p)
    log = L.get_logger("t.proc")
    log.info("public")
    log.info("secret")
    L.flush()
    assert sink.events() == ["public"]
    assert sink.records[0]["host"] == "h1"
    assert sink.records[0]["trace_id"] == "abc"
    assert L.statistics().sink_errors == 1
    L.remove_processor(broken)
    L.remove_context_provider(failing_provider)
    L.remove_context_provider(provider)
    L.remove_context_provider(empty_provider)
    log.info("plain")
    L.flush()
    assert "trace_id" not in sink.records[-1]


def test_failing_sink_is_counted_and_others_still_write(sink: Collect) -> None:
    class Broken:
        def emit(self, record: dict[str, Any]) -> None:
            raise OSError("disk gone")

        def flush(self) -> None:
            raise OSError("disk gone")

        def close(self) -> None:
            raise OSError("disk gone")

    L.configure_logging(sinks=[Broken(), sink])
    before = L.statistics().sink_errors
    L.get_logger("t.broken").info("still")
    L.flush()
    assert sink.events() == ["still"]
    assert L.statistics().sink_errors > before
    L.configure_logging(sinks=[sink])  # closing the broken sink is reported, not raised


async def test_blocked_sink_never_stalls_the_loop(sink: Collect) -> None:
    blocked = Collect(block=True)
    L.configure_logging(sinks=[blocked], capacity=500)
    log = L.get_logger("t.blocked")
    log.info("first")  # the writer takes it and blocks inside the sink
    assert blocked.entered.wait(5)
    total = 5_000
    worst = 0.0
    for i in range(total):
        t0 = time.perf_counter()
        log.info("spam", i=i)
        worst = max(worst, time.perf_counter() - t0)
        if i % 500 == 0:
            await asyncio.sleep(0)
    stats = L.statistics()
    assert stats.queued == 500
    assert stats.dropped == total - 500
    # The sink stays blocked until the gate opens below: a call that waited on it would hang.
    # The bound only absorbs a busy machine's scheduling hiccups.
    assert worst < 0.5
    blocked.gate.set()
    assert L.flush(10)
    spam = [r for r in blocked.records if r["event"] == "spam"]
    assert len(spam) == 500
    assert [r["i"] for r in spam] == list(range(500))
    report = [r for r in blocked.records if r["event"] == "logger.dropped"]
    assert sum(r["dropped"] for r in report) == total - 500
    assert report[-1]["dropped_total"] == total - 500


def test_shutdown_flushes_everything_and_restarts(sink: Collect) -> None:
    slow = Collect(block=True)
    L.configure_logging(sinks=[slow])
    log = L.get_logger("t.shutdown")
    for i in range(100):
        log.info("queued", i=i)
    threading.Timer(0.05, slow.gate.set).start()
    assert L.shutdown(10)
    assert len(slow.records) == 100
    assert slow.closed
    log.info("after-restart")
    assert L.flush()
    assert slow.records[-1]["event"] == "after-restart"


def test_shutdown_without_writer_writes_leftovers(sink: Collect) -> None:
    L.shutdown()
    L._core.queue.append((time.time(), L.INFO, "t.left", "left", None, {}, None))
    assert L.shutdown()
    assert sink.events()[-1] == "left"


def test_shutdown_timeout_reports_false(sink: Collect) -> None:
    stuck = Collect(block=True)
    L.configure_logging(sinks=[stuck])
    L.get_logger("t.stuck").info("x")
    assert stuck.entered.wait(5)
    assert not L.shutdown(0.05)
    assert not L.flush(0.05)
    stuck.gate.set()
    assert L.shutdown(5)


def test_stdlib_bridge_in_and_out(sink: Collect) -> None:
    std = logging.getLogger("t.std")
    std.propagate = False
    handler = L.install_stdlib_bridge("debug", std)
    assert L.install_stdlib_bridge("debug", std) is handler
    try:
        std.info("hello %s", "world", extra={"flowcoro": {"user": 1}})
        std.warning("bad %d", "notanint")  # a broken format still logs
        try:
            raise KeyError("k")
        except KeyError:
            std.exception("boom")
        L.flush()
        hello, bad, boom = sink.records
        assert hello["event"] == "hello world"
        assert hello["user"] == 1
        assert hello["logger"] == "t.std"
        assert bad["level"] == L.WARNING
        assert bad["event"] == "bad %d"
        assert boom["exc_info"][0] is KeyError

        # Out: our records to stdlib handlers, with no loop back into us.
        got: list[logging.LogRecord] = []

        class Keep(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                got.append(record)

        keep = Keep()
        std.addHandler(keep)
        L.configure_logging(sinks=[L.StdlibSink(), sink])
        L.get_logger("t.std").info("to.stdlib", n=3)
        L.get_logger("t.std").debug("filtered")
        L.get_logger("t.quiet").info("not-enabled")  # root logger at WARNING: skipped
        L.flush()
        assert [r.getMessage() for r in got] == ["to.stdlib n=3"]
        assert got[0].flowcoro_fields == {"n": 3}  # type: ignore[attr-defined]
        assert sink.events().count("to.stdlib") == 1
        std.removeHandler(keep)
    finally:
        std.removeHandler(handler)
        std.propagate = True


def test_install_on_root_sets_level() -> None:
    root = logging.getLogger()
    old_level = root.level
    handler = L.install_stdlib_bridge()
    try:
        assert root.level == logging.INFO
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def test_bad_configuration() -> None:
    with pytest.raises(ValueError, match="capacity"):
        L.configure_logging(capacity=0)
    with pytest.raises(ValueError, match="level"):
        L.configure_logging(level="loud")
    with pytest.raises(TypeError, match="level"):
        L.configure_logging(level=True)
    with pytest.raises(ValueError, match=r"levels\[x\]"):
        L.configure_logging(levels={"x": "nope"})


def test_callback_sink() -> None:
    seen: list[str] = []
    cb = L.CallbackSink(lambda r: seen.append(r["event"]))
    cb.emit({"event": "e"})
    cb.flush()
    cb.close()
    assert seen == ["e"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_gets_a_fresh_writer_and_no_parent_records(tmp_path: Path) -> None:
    path = tmp_path / "fork.log"
    sink = L.FileSink(path)
    L.configure_logging(sinks=[sink])
    try:
        log = L.get_logger("t.fork")
        log.info("parent.before")
        assert L.flush()
        # Fork as if the parent's writer were mid-batch: a record queued, a line pending in the
        # sink, the writer marked busy. The child must start its own writer and must not write
        # the parent's record or line again.
        L._core.sleeping = False
        L._core.queue.append((time.time(), L.INFO, "t.fork", "parent.queued", None, (), None))
        sink._pending.append('{"event": "parent.pending"}\n')
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child, reported through the exit status
            code = 3
            try:
                log.info("child.hello")
                code = 0 if L.flush(5) else 4
            finally:
                os._exit(code)
        L._core.sleeping = True
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        L._core.event.set()
        assert L.flush()
    finally:
        L.configure_logging(format="console")
    events = [json.loads(line)["event"] for line in path.read_text().splitlines()]
    assert sorted(events) == ["child.hello", "parent.before", "parent.pending", "parent.queued"]


def test_shutdown_reports_a_sink_that_fails_to_close(sink: Collect) -> None:
    class BadClose(Collect):
        def close(self) -> None:
            raise OSError("cannot close")

    bad = BadClose()
    L.configure_logging(sinks=[bad])
    L.get_logger("t.badclose").info("x")
    before = L.statistics().sink_errors
    assert L.shutdown()
    assert bad.events() == ["x"]
    assert L.statistics().sink_errors == before + 1
