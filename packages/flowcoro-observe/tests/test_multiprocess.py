from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Exemplar

from flowcoro.observe import SharedStore, SharedStoreError
from flowcoro.observe.multiprocess import _alive, _proc_start

WORKER = str(Path(__file__).with_name("_worker.py"))


class Worker:
    def __init__(self, directory: Path, requests: int, user: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, WORKER, str(directory), str(requests), str(user)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        words = self.proc.stdout.readline().split()
        assert words[0] == "ready", words
        self.pid = int(words[1])
        self.port = int(words[2])

    def command(self, line: str) -> str:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.close()

    def close(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()
        self.proc.wait(10)


def scrape(worker: Worker) -> dict[str, Metric]:
    response = httpx.get(f"http://127.0.0.1:{worker.port}/metrics", timeout=10)
    assert response.status_code == 200
    return {f.name: f for f in text_string_to_metric_families(response.text)}


def value(families: dict[str, Metric], sample: str, **labels: str) -> float:
    family = next(f for f in families.values() if any(s.name == sample for s in f.samples))
    found = [
        s.value for s in family.samples if s.name == sample and labels.items() <= s.labels.items()
    ]
    return sum(found)


def request_count(families: dict[str, Metric]) -> float:
    return value(families, "http_server_request_duration_seconds_count", http_route="/json")


def test_two_workers_one_scrape_sums_them_and_restarts_never_go_backwards(tmp_path: Path) -> None:
    a = Worker(tmp_path, requests=3, user=2)
    b = Worker(tmp_path, requests=5, user=1)
    try:
        families = scrape(b)  # B answers the scrape, A's part comes from its snapshot
        assert request_count(families) == 8
        assert value(families, "test_user_jobs_total", kind="batch") == 3
        bucket = value(
            families, "http_server_request_duration_seconds_bucket", http_route="/json", le="0.0025"
        )
        assert bucket == 8
        # Gauges stay per worker, labelled with the worker's pid.
        active = families["http_server_active_requests"].samples
        assert {s.labels["pid"] for s in active} == {str(a.pid), str(b.pid)}
        assert value(families, "process_cpu_seconds_total") > 0
        # Counters of a worker only grow between scrapes.
        assert a.command("more 4") == "done"
        assert request_count(scrape(b)) == 12

        a.kill()  # a crash: its last snapshot is folded into the retired totals
        families = scrape(b)
        assert request_count(families) == 12
        assert value(families, "test_user_jobs_total", kind="batch") == 3
        active = families["http_server_active_requests"].samples
        assert {s.labels["pid"] for s in active} == {str(b.pid)}
        assert (tmp_path / "retired.json").exists()
        assert not (tmp_path / f"w-{a.pid}.json").exists()

        c = Worker(tmp_path, requests=4, user=0)  # the restarted worker starts from zero ...
        try:
            assert request_count(scrape(c)) == 16  # ... and the totals still only grow
            assert b.command("stop") == "stopped"  # a clean stop retires its counts too
            b.close()
            families = scrape(c)
            assert request_count(families) == 16
            assert value(families, "test_user_jobs_total", kind="batch") == 3
        finally:
            c.kill()
    finally:
        for w in (a, b):
            if w.proc.poll() is None:
                w.kill()


def _counter(name: str, value: float, exemplar: Exemplar | None = None) -> Metric:
    family = CounterMetricFamily(name, "help", labels=["k"])
    family.add_metric(["x"], value)
    if exemplar is not None:
        family.samples[0] = family.samples[0]._replace(exemplar=exemplar)
    return family


def _gauge(name: str, value: float) -> Metric:
    family = GaugeMetricFamily(name, "help")
    family.add_metric([], value)
    return family


def test_merge_rules_exemplars_and_type_conflicts(tmp_path: Path) -> None:
    me = SharedStore(tmp_path)
    other = SharedStore(tmp_path, pid=os.getppid())  # alive: the pytest parent process
    other.write([_counter("jobs", 2, Exemplar({"trace_id": "a"}, 1.0, 10.0)), _gauge("temp", 5)])
    merged = {
        m.name: m
        for m in me.collect(
            own=[_counter("jobs", 3, Exemplar({"trace_id": "b"}, 1.0, 20.0)), _counter("temp", 1)]
        )
    }
    jobs = [s for s in merged["jobs"].samples if s.name == "jobs_total"]
    assert [s.value for s in jobs] == [5]
    assert jobs[0].exemplar.labels == {"trace_id": "b"}  # the latest exemplar wins
    # "temp" is a gauge for one writer and a counter for the other: the lower pid's type wins
    # (read first), the other's samples are skipped
    if os.getppid() < os.getpid():
        assert (merged["temp"].type, [s.value for s in merged["temp"].samples]) == ("gauge", [5])
    else:
        assert (merged["temp"].type, [s.value for s in merged["temp"].samples]) == ("counter", [1])


def test_workers_are_read_in_pid_order_not_name_order(tmp_path: Path) -> None:
    """pid 999 and pid 1000 as text sort the other way round; the merge reads by number."""
    from flowcoro.observe.multiprocess import _pid_of

    names = [tmp_path / n for n in ("w-1000.json", "w-999.json", "w-x.json", "w-10.json")]
    assert [p.name for p in sorted(names, key=_pid_of)] == [
        "w-10.json",
        "w-999.json",
        "w-1000.json",
        "w-x.json",
    ]


def test_dead_worker_files_retire_once(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    dead = SharedStore(tmp_path, pid=proc.pid)
    dead.write([_counter("jobs", 7), _gauge("temp", 1)])
    me = SharedStore(tmp_path)
    assert [s.value for s in next(iter(me.collect())).samples if s.name == "jobs_total"] == [7]
    assert not dead.path.exists()
    retired = json.loads((tmp_path / "retired.json").read_text())
    assert [f["name"] for f in retired["families"]] == ["jobs", "temp"]
    assert retired["families"][1]["samples"] == []  # gauges of dead workers are dropped
    totals = {m.name: m for m in me.collect(own=[_counter("jobs", 1)])}
    assert [s.value for s in totals["jobs"].samples if s.name == "jobs_total"] == [8]


def test_torn_or_vanished_files_are_skipped_and_reset_clears(tmp_path: Path) -> None:
    (tmp_path / "w-123.json").write_text("{not json")
    me = SharedStore(tmp_path)
    assert list(me.collect()) == []
    me.write([_counter("jobs", 1)])
    me.retire()
    assert not me.path.exists()
    me.retire()  # nothing to retire: no error
    assert [s.value for m in me.collect() for s in m.samples if s.name == "jobs_total"] == [1]
    SharedStore.reset(tmp_path)
    assert list(me.collect()) == []
    SharedStore.reset(tmp_path / "missing")  # no directory: nothing to do


def test_bad_directory_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SharedStoreError, match="metrics_dir"):
        SharedStore(blocker / "sub")
    # Root may write anywhere, so a read-only directory is simulated.
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(SharedStoreError, match="not writable"):
        SharedStore(tmp_path)


def test_liveness_guards_against_pid_reuse() -> None:
    assert _alive(os.getpid(), _proc_start(os.getpid()))
    assert not _alive(os.getpid(), "0")  # same pid, another start time: a reused pid
    assert _alive(1, None)  # not ours to signal (or ours as root): alive either way
    assert _proc_start(2**22 + 12345) is None
