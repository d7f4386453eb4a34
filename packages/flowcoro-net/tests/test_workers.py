"""run_server in this process (the supervisor, covered) forking real workers; a client thread
talks to them and ends the run with SIGTERM, as an orchestrator would."""

from __future__ import annotations

import collections
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from flowcoro.core import hookimpl
from flowcoro.core.plugins import Plugins, set_plugins
from flowcoro.net import Connection, DrainStats, InvalidLimit, Server, run_server


async def pid_handler(conn: Connection) -> None:
    """Replies with the worker's pid, then closes."""
    await conn.send(str(os.getpid()).encode())


def ask_pid(port: int | None = None, uds: str | None = None, timeout: float = 5.0) -> int:
    family = socket.AF_UNIX if uds else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(uds if uds else ("127.0.0.1", port))
        data = b""
        while chunk := sock.recv(64):
            data += chunk
    return int(data)


def wait_for_pids(ask: Callable[[], int], want: int, deadline: float = 15.0) -> set[int]:
    seen: set[int] = set()
    end = time.monotonic() + deadline
    while len(seen) < want and time.monotonic() < end:
        try:
            seen.add(ask())
        except (OSError, ValueError):
            time.sleep(0.05)
    return seen


def in_thread(body: Callable[[], None]) -> tuple[threading.Thread, list[BaseException]]:
    """Run ``body`` in a thread; whatever happens, SIGTERM this process at the end."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            body()
        except BaseException as exc:
            errors.append(exc)
        finally:
            os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_single_process_serves_until_sigterm_and_drains() -> None:
    port = free_port()
    events: list[str] = []
    stats: list[DrainStats] = []

    def on_started(server: Server) -> None:
        events.append(f"started {server.port}")

    async def on_shutdown_begin() -> None:
        events.append("draining")

    def on_stopped(drained: DrainStats) -> None:
        stats.append(drained)

    async def build() -> Callable[[Connection], object]:
        events.append("built")
        return pid_handler

    def client() -> None:
        (pid,) = wait_for_pids(lambda: ask_pid(port), 1)
        events.append(f"pid {pid}")

    thread, errors = in_thread(client)
    status = run_server(
        build,
        host="127.0.0.1",
        port=port,
        loop="asyncio",
        on_started=on_started,
        on_shutdown_begin=on_shutdown_begin,
        on_stopped=on_stopped,
        drain_timeout=2,
    )
    thread.join(10)
    assert not errors
    assert status == 0
    assert events == ["built", f"started {port}", f"pid {os.getpid()}", "draining"]
    assert stats[0].cut == 0


def test_single_process_failure_returns_one() -> None:
    def build() -> Callable[[Connection], object]:
        raise RuntimeError("cannot build")

    assert run_server(build, host="127.0.0.1", port=free_port()) == 1


def test_two_workers_spread_connections_evenly() -> None:
    port = free_port()
    counts: collections.Counter[int] = collections.Counter()

    def clients() -> None:
        assert len(wait_for_pids(lambda: ask_pid(port), 2)) == 2
        for _ in range(1000):
            counts[ask_pid(port)] += 1

    announced: list[tuple[int, int]] = []

    class Shared:
        @hookimpl
        def flowcoro_net_workers_starting(self, workers: int) -> None:
            announced.append((os.getpid(), workers))

    host = Plugins(autoload=False)
    host.register(Shared(), name="shared")
    set_plugins(host)
    try:
        thread, errors = in_thread(clients)
        status = run_server(lambda: pid_handler, workers=2, host="127.0.0.1", port=port)
        thread.join(10)
    finally:
        set_plugins(None)
    assert not errors, errors
    assert status == 0
    assert announced == [(os.getpid(), 2)]  # once, in the supervisor, before the fork
    assert len(counts) == 2
    assert os.getpid() not in counts
    assert max(counts.values()) <= 650, counts


def test_a_killed_worker_is_restarted_on_a_chosen_port(tmp_path: Path) -> None:
    seen: dict[str, object] = {}
    port_file = tmp_path / "port"

    def on_started(server: Server) -> None:
        port_file.write_text(str(server.port))

    def clients() -> None:
        end = time.monotonic() + 10
        while not port_file.exists() and time.monotonic() < end:
            time.sleep(0.02)
        port = int(port_file.read_text())
        first = wait_for_pids(lambda: ask_pid(port), 2)
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        later: set[int] = set()
        end = time.monotonic() + 15
        while time.monotonic() < end and not (len(later) == 2 and victim not in later):
            later = wait_for_pids(lambda: ask_pid(port), 2, deadline=1)
        seen.update(first=first, later=later, victim=victim)

    thread, errors = in_thread(clients)
    status = run_server(
        lambda: pid_handler, workers=2, host="127.0.0.1", port=0, on_started=on_started
    )
    thread.join(10)
    assert not errors, errors
    assert status == 0
    later = seen["later"]
    assert isinstance(later, set)
    assert len(later) == 2
    assert seen["victim"] not in later


def test_workers_share_an_inherited_unix_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "workers.sock")
    pids: set[int] = set()

    def clients() -> None:
        pids.update(wait_for_pids(lambda: ask_pid(uds=path), 1))

    thread, errors = in_thread(clients)
    status = run_server(lambda: pid_handler, workers=2, uds=path)
    thread.join(10)
    assert not errors, errors
    assert status == 0
    assert pids
    assert os.getpid() not in pids
    assert not Path(path).exists()


def test_workers_that_keep_crashing_stop_the_supervisor(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def build() -> Callable[[Connection], object]:
        raise RuntimeError("broken build")

    started = time.monotonic()
    status = run_server(build, workers=2, host="127.0.0.1", port=free_port(), max_restarts=3)
    assert status == 1
    assert time.monotonic() - started < 10
    assert "giving up" in caplog.text


def test_run_server_validates_its_arguments() -> None:
    with pytest.raises(InvalidLimit, match="workers"):
        run_server(lambda: pid_handler, workers=0, port=0)
    with pytest.raises(InvalidLimit, match="max_restarts"):
        run_server(lambda: pid_handler, port=0, max_restarts=-1)
    with pytest.raises(InvalidLimit, match="port"):
        run_server(lambda: pid_handler)
    with pytest.raises(InvalidLimit, match="uds"):
        run_server(lambda: pid_handler, workers=2, port=0, uds="/tmp/x.sock")
