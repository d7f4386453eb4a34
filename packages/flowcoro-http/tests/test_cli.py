"""``flowcoro serve``: a real process, real signals, graceful shutdown with requests in flight."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest
from _http_helpers import plugins

from flowcoro.core.cli import main as cli_main
from flowcoro.core.errors import FlowCoroError
from flowcoro.http.cli import load_app

APP = textwrap.dedent(
    """
    import asyncio
    from flowcoro.http import App

    app = App("served")

    @app.get("/")
    async def index(request):
        return "up"

    @app.get("/slow")
    async def slow(request):
        await asyncio.sleep(1.0)
        return "finished"

    def build_app():
        return app

    not_an_app = 3
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(200):
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else b""
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise AssertionError("server did not come up")


def start(tmp_path: Path, *args: str) -> subprocess.Popen[bytes]:
    (tmp_path / "served_app.py").write_text(APP)
    env = dict(os.environ, FLOWCORO_PLUGINS="http,net")
    return subprocess.Popen(
        [sys.executable, "-m", "flowcoro.core.cli", "serve", "served_app:app", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_and_drain_on_sigterm(tmp_path: Path, workers: str) -> None:
    port = free_port()
    proc = start(tmp_path, "--port", str(port), "--workers", workers, "--drain-timeout", "5")
    try:
        wait_up(f"http://127.0.0.1:{port}/", proc)
        with httpx.Client(timeout=10) as client:
            import threading

            result: list[httpx.Response] = []
            t = threading.Thread(
                target=lambda: result.append(client.get(f"http://127.0.0.1:{port}/slow"))
            )
            t.start()
            time.sleep(0.4)
            proc.send_signal(signal.SIGTERM)
            t.join(10)
        assert result[0].status_code == 200
        assert result[0].text == "finished"
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()


def test_serve_on_unix_socket_with_access_log(tmp_path: Path) -> None:
    uds = str(tmp_path / "s.sock")
    proc = start(tmp_path, "--uds", uds, "--access-log", "--loop", "asyncio")
    try:
        for _ in range(200):
            if os.path.exists(uds):
                break
            time.sleep(0.05)
        transport = httpx.HTTPTransport(uds=uds)
        with httpx.Client(transport=transport) as client:
            for _ in range(100):
                try:
                    r = client.get("http://local/")
                    break
                except httpx.HTTPError:
                    time.sleep(0.05)
            assert r.text == "up"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()


def test_load_app_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "served_app.py").write_text(APP)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_app("served_app:app").name == "served"
    assert load_app("served_app:build_app").name == "served"
    for target, message in [
        ("served_app", "MODULE:ATTRIBUTE"),
        ("no_such_module_x:app", "cannot import"),
        ("served_app:missing", "has no attribute"),
        ("served_app:not_an_app", "not a flowcoro.http.App"),
    ]:
        with pytest.raises(FlowCoroError, match=message):
            load_app(target)
    sys.modules.pop("served_app", None)


def test_serve_is_a_cli_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli_main(["serve", "--help"], plugins=plugins())
    out = capsys.readouterr().out
    assert "--workers" in out
    assert "--uds" in out
    assert cli_main(["serve", "nope"], plugins=plugins()) == 1


def test_serve_in_process_until_sigterm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    (tmp_path / "served_app.py").write_text(APP)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    port = free_port()
    answers: list[str] = []

    def poke() -> None:
        for _ in range(200):
            try:
                answers.append(httpx.get(f"http://127.0.0.1:{port}/", timeout=1).text)
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=poke)
    thread.start()
    try:
        status = cli_main(
            ["serve", "served_app:app", "--port", str(port), "--access-log", "--loop", "asyncio"],
            plugins=plugins(),
        )
    finally:
        thread.join(15)
        sys.modules.pop("served_app", None)
    assert status == 0
    assert answers == ["up"]
