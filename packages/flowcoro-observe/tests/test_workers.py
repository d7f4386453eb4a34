"""Two forked workers of flowcoro-net's run_server: one scrape, any worker, sums them both."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from flowcoro.observe.multiprocess import ENV_DIR, _remove_dir, prepare_worker_dir

pytest.importorskip("flowcoro.http")
pytest.importorskip("flowcoro.net")

SERVED = str(Path(__file__).with_name("_served.py"))


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()]


def json_count(port: int) -> tuple[float, set[str]]:
    with httpx.Client() as client:
        text = client.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    total = 0.0
    pids: set[str] = set()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if (
                s.name == "http_server_request_duration_seconds_count"
                and s.labels["http_route"] == "/json"
            ):
                total += s.value
            if s.name == "http_server_active_requests":
                pids.add(s.labels["pid"])
    return total, pids


def wait_for(check: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():  # type: ignore[operator]
                return
        except (httpx.HTTPError, OSError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def test_two_forked_workers_sum_in_one_scrape(
    unused_tcp_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_DIR, raising=False)
    port = unused_tcp_port
    proc = subprocess.Popen([sys.executable, SERVED, str(port)], env={**os.environ})
    try:
        wait_for(
            lambda: (
                len(children(proc.pid)) == 2
                and httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
            )
        )
        for _ in range(20):  # a new connection each: SO_REUSEPORT spreads them over the workers
            with httpx.Client(headers={"connection": "close"}) as client:
                assert client.get(f"http://127.0.0.1:{port}/json").status_code == 200
        time.sleep(0.3)  # > the 0.05 s flush interval
        for _ in range(4):  # whichever worker answers, the sum is the same
            total, pids = json_count(port)
            assert total == 20
            assert len(pids) == 2
        victim = children(proc.pid)[0]
        os.kill(victim, signal.SIGKILL)  # the supervisor restarts it
        wait_for(lambda: victim not in children(proc.pid) and len(children(proc.pid)) == 2)
        time.sleep(0.3)
        for _ in range(4):
            total, pids = json_count(port)
            assert total == 20  # never backwards after a restart
            assert str(victim) not in pids
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0


def test_prepare_worker_dir_creates_exports_and_resets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_DIR, raising=False)
    made = prepare_worker_dir()
    assert os.environ[ENV_DIR] == made
    assert Path(made).is_dir()
    _remove_dir(made, os.getpid() + 1)  # not the owner: kept
    assert Path(made).is_dir()
    _remove_dir(made, os.getpid())
    assert not Path(made).exists()
    (tmp_path / "w-1.json").write_text("{}")
    monkeypatch.setenv(ENV_DIR, str(tmp_path))
    assert prepare_worker_dir() == str(tmp_path)
    assert not (tmp_path / "w-1.json").exists()
