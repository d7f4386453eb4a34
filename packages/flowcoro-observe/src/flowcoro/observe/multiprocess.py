"""Metrics across forked workers: one snapshot file per worker, merged when scraped.

Why not prometheus_client's multiprocess mode: it makes every ``inc()`` write an mmap'ed file
under a lock (microseconds per update, far over a per-request budget), it must be enabled by an
environment variable before ``prometheus_client`` is imported, it cannot carry custom collectors
(pool statistics, our cheap instruments), and it keeps one file per pid forever.

This design: each worker keeps its metrics in plain process memory (free to update) and writes a
snapshot of *all* its metric families — built-ins, `MetricsRegistry` instruments and everything in
``prometheus_client.REGISTRY`` (user metrics, process and GC collectors) — to
``<dir>/w-<pid>.json`` every ``flush_interval`` seconds and when it stops, by atomic rename. A
scrape, served by whichever worker receives it, writes its own snapshot and merges every file:

- counters, histograms and summary counts/sums are **summed over all workers, live and dead**;
- gauges (and summary quantiles, info, state sets) are shown **per live worker** with a ``pid``
  label; sum or max them in PromQL. A dead worker's gauges disappear with it.

A dead worker's last snapshot is folded into ``retired.json`` (under an ``flock``) and its file
removed, so totals never go backwards when a worker is restarted and the directory does not grow
with restarts. What a worker counted after its last flush and before it was killed is lost (at
most ``flush_interval`` seconds of its traffic); a clean stop flushes. Other workers' values are
up to ``flush_interval`` seconds old in a scrape.

The directory must be fresh for each deployment (the master calls `SharedStore.reset`, or points
each start at a new directory): files left by a previous run would be added to this one's totals.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Exemplar

from flowcoro.observe.errors import SharedStoreError

__all__ = ["ENV_DIR", "SharedStore", "prepare_worker_dir"]

#: The environment variable of the ``metrics_dir`` setting; forked workers inherit it.
ENV_DIR = "FLOWCORO_METRICS_DIR"

_SUMMED = frozenset({"counter", "histogram", "summary"})
_GROUP_EXCLUDE = frozenset({"le", "quantile"})

Snapshot = list[dict[str, Any]]


def _is_summed(family_type: str, sample_name: str, labels: dict[str, str]) -> bool:
    if family_type == "summary":
        return "quantile" not in labels
    return family_type in _SUMMED


def _proc_start(pid: int) -> str | None:
    """The process's start time in clock ticks (guards against pid reuse), None without /proc."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # Field 22, counted after the parenthesised command name (which may contain spaces).
    return stat.rsplit(b")", 1)[-1].split()[19].decode()


def _alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return start is None or _proc_start(pid) in (None, start)


def _pid_of(path: Path) -> int:
    """The worker pid in a ``w-<pid>.json`` name (names that are not are read last)."""
    digits = path.stem[2:]
    return int(digits) if digits.isdigit() else 1 << 62


def snapshot(families: Iterable[Metric]) -> Snapshot:
    """Metric families as JSON-able dicts (``_created`` samples dropped: they differ per worker)."""
    out: Snapshot = []
    for family in families:
        samples = []
        for s in family.samples:
            if s.name.endswith("_created") and family.type in _SUMMED:
                continue
            ex = s.exemplar
            exemplar = [ex.labels, ex.value, ex.timestamp] if ex is not None else None
            samples.append([s.name, s.labels, s.value, exemplar])
        out.append(
            {
                "name": family.name,
                "type": family.type,
                "help": family.documentation,
                "unit": family.unit,
                "samples": samples,
            }
        )
    return out


class _Merger:
    """Adds snapshots together by the rules in the module docstring."""

    def __init__(self) -> None:
        self.families: dict[str, dict[str, Any]] = {}
        # family name -> group key (labels minus le/quantile) -> sample key -> [value, exemplar]
        self.groups: dict[str, dict[tuple[Any, ...], dict[tuple[Any, ...], list[Any]]]] = {}

    def add(self, snap: Snapshot, pid: int | None, summed_only: bool = False) -> None:
        for fam in snap:
            name = fam["name"]
            typ = fam["type"]
            known = self.families.setdefault(name, fam)
            if known["type"] != typ:
                continue  # a metric redeclared with another type by a newer build: skip it
            groups = self.groups.setdefault(name, {})
            for sample_name, labels, value, exemplar in fam["samples"]:
                summed = _is_summed(typ, sample_name, labels)
                if not summed:
                    if summed_only or pid is None:
                        continue
                    labels = {**labels, "pid": labels.get("pid", str(pid))}
                group = tuple(sorted((k, v) for k, v in labels.items() if k not in _GROUP_EXCLUDE))
                samples = groups.setdefault(group, {})
                key = (sample_name, tuple(sorted(labels.items())))
                cell = samples.get(key)
                if cell is None:
                    samples[key] = [value, exemplar, labels]
                elif summed:
                    cell[0] += value
                    if exemplar is not None and (cell[1] is None or exemplar[2] >= cell[1][2]):
                        cell[1] = exemplar
                else:
                    cell[0] = value

    def snapshot(self, summed_only: bool = False) -> Snapshot:
        out: Snapshot = []
        for name, fam in self.families.items():
            samples = []
            for group in self.groups.get(name, {}).values():
                for (sample_name, _), (value, exemplar, labels) in group.items():
                    if summed_only and not _is_summed(fam["type"], sample_name, labels):
                        continue  # pragma: no cover - add(summed_only=True) filtered them
                    samples.append([sample_name, labels, value, exemplar])
            out.append({**fam, "samples": samples})
        return out

    def metrics(self) -> Iterator[Metric]:
        for fam in self.snapshot():
            metric = Metric(fam["name"], fam["help"], fam["type"], fam["unit"])
            for sample_name, labels, value, exemplar in fam["samples"]:
                ex = Exemplar(*exemplar) if exemplar is not None else None
                metric.add_sample(sample_name, labels, value, exemplar=ex)
            yield metric


class SharedStore:
    """The snapshot directory of a group of workers. See the module docstring for the rules."""

    RETIRED = "retired.json"

    def __init__(self, directory: str | os.PathLike[str], *, pid: int | None = None) -> None:
        self.directory = Path(directory)
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise SharedStoreError(
                f"metrics_dir {str(self.directory)!r}: cannot create it: {exc}"
            ) from exc
        if not os.access(self.directory, os.W_OK | os.X_OK):
            raise SharedStoreError(f"metrics_dir {str(self.directory)!r} is not writable")
        self.pid = os.getpid() if pid is None else pid
        self._start = _proc_start(self.pid)

    @property
    def path(self) -> Path:
        return self.directory / f"w-{self.pid}.json"

    @classmethod
    def reset(cls, directory: str | os.PathLike[str]) -> None:
        """Remove every snapshot: call it in the master before forking the workers."""
        root = Path(directory)
        if not root.is_dir():
            return
        for entry in root.iterdir():
            if entry.name.endswith((".json", ".tmp")):
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()

    def _write(self, path: Path, data: dict[str, Any]) -> None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, separators=(",", ":"))
        os.replace(tmp, path)

    def _read(self, path: Path) -> dict[str, Any] | None:
        try:
            with open(path, encoding="utf-8") as f:
                data: dict[str, Any] = json.load(f)
        except (FileNotFoundError, ValueError):
            return None  # vanished (retired meanwhile) or torn by a crash mid-write
        return data

    def write(self, families: Iterable[Metric]) -> None:
        """Write this worker's snapshot (atomically replacing the previous one)."""
        self._write(
            self.path, {"pid": self.pid, "start": self._start, "families": snapshot(families)}
        )

    def collect(self, own: Iterable[Metric] | None = None) -> Iterator[Metric]:
        """Merged metric families of every worker; ``own`` (this worker's live families) is
        written first so that this worker's part is exact."""
        if own is not None:
            self.write(own)
        with self._locked():
            self._retire_dead()
            merger = _Merger()
            retired = self._read(self.directory / self.RETIRED)
            if retired is not None:
                merger.add(retired["families"], None, summed_only=True)
            # By pid, numerically: where two workers disagree on a metric's type, the first
            # one read wins, and that must not depend on how the pids sort as text.
            for path in sorted(self.directory.glob("w-*.json"), key=_pid_of):
                data = self._read(path)
                if data is not None:
                    merger.add(data["families"], int(data["pid"]))
        yield from merger.metrics()

    def _locked(self) -> contextlib.AbstractContextManager[None]:
        @contextlib.contextmanager
        def lock() -> Iterator[None]:
            fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # closing releases the flock

        return lock()

    def _retire_dead(self) -> None:
        dead: list[tuple[Path, dict[str, Any]]] = []
        for path in self.directory.glob("w-*.json"):
            data = self._read(path)
            if data is None:
                continue
            pid = int(data["pid"])
            if pid != self.pid and not _alive(pid, data.get("start")):
                dead.append((path, data))
        if not dead:
            return
        merger = _Merger()
        retired = self._read(self.directory / self.RETIRED)
        if retired is not None:
            merger.add(retired["families"], None, summed_only=True)
        for _, data in dead:
            merger.add(data["families"], None, summed_only=True)
        # Retired totals are written before the worker files go: a crash in between counts a
        # dead worker twice (totals jump up) rather than not at all (totals go backwards).
        self._write(self.directory / self.RETIRED, {"families": merger.snapshot(summed_only=True)})
        for path, _ in dead:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def retire(self) -> None:
        """Fold this worker's snapshot into the retired totals now (clean shutdown); call
        `write` first so the last counts are in it."""
        with self._locked():
            data = self._read(self.path)
            if data is None:
                return
            merger = _Merger()
            retired = self._read(self.directory / self.RETIRED)
            if retired is not None:
                merger.add(retired["families"], None, summed_only=True)
            merger.add(data["families"], None, summed_only=True)
            self._write(
                self.directory / self.RETIRED, {"families": merger.snapshot(summed_only=True)}
            )
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()


def prepare_worker_dir() -> str:
    """Call in the supervisor before forking workers (flowcoro-net's
    ``flowcoro_net_workers_starting`` hook does): reset the directory ``FLOWCORO_METRICS_DIR``
    names, or create a fresh one, export it to the workers, and remove it when the supervisor
    exits. Returns the directory."""
    directory = os.environ.get(ENV_DIR, "")
    if directory:
        SharedStore.reset(directory)
        return directory
    directory = tempfile.mkdtemp(prefix="flowcoro-metrics-")
    os.environ[ENV_DIR] = directory
    atexit.register(_remove_dir, directory, os.getpid())
    return directory


def _remove_dir(directory: str, owner: int) -> None:
    if os.getpid() == owner:  # forked workers inherit the atexit hook: only the owner removes
        shutil.rmtree(directory, ignore_errors=True)
