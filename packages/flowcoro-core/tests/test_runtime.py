from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import pytest

from flowcoro.core import logger as L
from flowcoro.core import runtime
from flowcoro.core.runtime import (
    loop_factory,
    request_shutdown,
    run,
    shutdown_requested,
    wait_shutdown,
)


class Collect:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def emit(self, record: dict[str, Any]) -> None:
        self.records.append(record)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.fixture
def logs() -> Iterator[Collect]:
    sink = Collect()
    L.configure_logging(sinks=[sink])
    yield sink
    L.configure_logging(sinks=[L.StreamSink(None, "console")])


def test_run_returns_result_and_logs_the_loop(logs: Collect) -> None:
    async def main() -> int:
        assert not shutdown_requested()
        return 42

    assert run(main) == 42
    assert run(main(), use_uvloop=False) == 42
    L.flush()
    loops = [r["loop"] for r in logs.records if r["event"] == "runtime.loop"]
    assert loops[0].startswith("uvloop")
    assert loops[1] == "asyncio"


def test_run_propagates_errors() -> None:
    async def main() -> None:
        raise LookupError("x")

    with pytest.raises(LookupError):
        run(main)


def test_loop_factory_names() -> None:
    name, factory = loop_factory(False)
    assert name == "asyncio"
    assert factory is asyncio.new_event_loop
    assert loop_factory(True)[0].startswith("uvloop")


def test_bad_arguments_close_the_coroutine() -> None:
    async def main() -> None:
        pass

    with pytest.raises(ValueError, match="drain_timeout"):
        run(main(), drain_timeout=0)


def test_uvloop_required_but_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)

    async def main() -> None:
        pass

    with pytest.raises(RuntimeError, match="uvloop is not installed"):
        run(main(), use_uvloop=True)
    assert loop_factory(None)[0] == "asyncio"


def test_outside_run() -> None:
    with pytest.raises(RuntimeError, match="outside"):
        request_shutdown()
    with pytest.raises(RuntimeError, match="outside"):
        asyncio.run(wait_shutdown())


def test_nested_run_refused() -> None:
    async def inner() -> None:
        pass

    async def main() -> None:
        with pytest.raises(RuntimeError, match="already running"):
            run(inner())

    run(main)


def test_request_shutdown_graceful(monkeypatch: pytest.MonkeyPatch, logs: Collect) -> None:
    flipped: list[str] = []
    cleaned: list[str] = []

    async def async_callback() -> None:
        flipped.append("async")

    def broken_callback() -> None:
        raise RuntimeError("callback bug")

    async def main() -> None:
        waiter = asyncio.create_task(wait_shutdown())
        asyncio.get_running_loop().call_later(0.01, request_shutdown, signal.SIGTERM)
        try:
            await asyncio.sleep(10)
        finally:
            assert shutdown_requested()
            await waiter
            await asyncio.sleep(0.01)  # cleanup may await
            cleaned.append("done")

    with pytest.raises(SystemExit) as info:
        run(
            main,
            on_signal=[lambda: flipped.append("sync"), async_callback, broken_callback],
            drain_timeout=5,
        )
    assert info.value.code == 128 + signal.SIGTERM
    assert flipped == ["sync", "async"]
    assert cleaned == ["done"]
    L.flush()
    events = [r["event"] for r in logs.records]
    assert "runtime.shutdown" in events
    assert "runtime.on_signal.failed" in events


def test_second_request_and_drain_timeout_force_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    exits: list[int] = []
    monkeypatch.setattr(runtime, "_exit", exits.append)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.call_later(0.01, request_shutdown, signal.SIGINT)
        loop.call_later(0.02, request_shutdown, signal.SIGINT)
        try:
            await asyncio.sleep(10)
        finally:
            await asyncio.sleep(0.1)  # drain_timeout (0.05) fires during this

    with pytest.raises(SystemExit):
        run(main, drain_timeout=0.05)
    assert exits == [128 + signal.SIGINT, 128 + signal.SIGINT]


SCRIPT = textwrap.dedent(
    """
    import asyncio, sys, time
    from flowcoro.core.runtime import run

    async def main():
        print("ready", flush=True)
        try:
            await asyncio.sleep(60)
        finally:
            print("cleanup", flush=True)
            await asyncio.sleep(float(sys.argv[1]))
            print("cleaned", flush=True)

    run(main, drain_timeout=float(sys.argv[2]))
    """
)


def _spawn(cleanup: float, drain: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(cleanup), str(drain)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_sigterm_graceful_subprocess() -> None:
    proc = _spawn(0.05, 10)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert out.split() == ["cleanup", "cleaned"]
    assert "runtime.shutdown" in err


def test_second_sigint_forces_exit_subprocess() -> None:
    proc = _spawn(30, 60)
    proc.send_signal(signal.SIGINT)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "cleanup"
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 128 + signal.SIGINT
    assert time.monotonic() - started < 10
    assert "runtime.forced_exit" in err


def test_drain_timeout_forces_exit_subprocess() -> None:
    proc = _spawn(30, 0.3)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 128 + signal.SIGTERM
    assert "cleaned" not in out
    assert "drain timeout" in err
