"""Helpers every benchmark shares (standard library only, so a benchmark can import this module
before it takes its own folder off ``sys.path``)."""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterable


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ensure_wrk(bench: str) -> str:
    """The path of ``wrk``, installed from Debian's packages when missing."""
    found = shutil.which("wrk")
    if found is None:
        subprocess.run(["apt-get", "install", "-y", "wrk"], check=False, capture_output=True)
        found = shutil.which("wrk")
    if found is None:
        raise SystemExit(f"bench {bench}: wrk is missing and apt-get could not install it")
    return found


def ensure_modules(modules: Iterable[str], *, why: str = "") -> bool:
    """Install the missing ones of ``modules`` (import name = package name) into this
    environment; True when all of them import afterwards."""
    need = [m for m in modules if importlib.util.find_spec(m) is None]
    if not need:
        return True
    print(f"installing {', '.join(need)}{f' for {why}' if why else ''} ...", flush=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", *need], check=False, capture_output=True
    )
    importlib.invalidate_caches()
    return all(importlib.util.find_spec(m) is not None for m in need)


class Sink(asyncio.Transport):
    """A transport that discards what the server writes (no kernel, no client)."""

    def write(self, data: object) -> None:
        pass

    def writelines(self, data: object) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


def callgrind_instructions(bench: str, argv: list[str], env: dict[str, str]) -> int:
    """Instructions ``python argv...`` executes, counted by ``valgrind --tool=callgrind``
    (installed from Debian's packages when missing), with ``env`` over this environment and the
    hash seed fixed: the same for the same code whatever else the machine is doing."""
    if shutil.which("valgrind") is None:
        subprocess.call(["apt-get", "install", "-y", "-q", "valgrind"])
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={tmp}/callgrind.out",
                sys.executable,
                *argv,
            ],
            env={**os.environ, "PYTHONHASHSEED": "0", **env},
            capture_output=True,
            text=True,
            check=True,
        ).stderr
    match = re.search(r"Collected : (\d+)", out)
    if match is None:
        raise SystemExit(f"bench {bench}: no instruction count from callgrind:\n{out}")
    return int(match.group(1))
