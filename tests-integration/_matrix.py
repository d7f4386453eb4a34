"""Helpers of the install-matrix tests: wheels of every distribution, fresh environments."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ROOT / "packages"


@dataclass(frozen=True)
class Dist:
    name: str
    path: Path
    flowcoro_deps: tuple[str, ...]
    entry_points: tuple[str, ...]
    extras: tuple[str, ...]


def distributions() -> dict[str, Dist]:
    found = {}
    for pyproject in sorted(PACKAGES.glob("*/pyproject.toml")):
        project = tomllib.loads(pyproject.read_text())["project"]
        deps = tuple(
            re.split(r"[<>=!~ ;\[]", d, maxsplit=1)[0]
            for d in project.get("dependencies", [])
            if d.startswith("flowcoro-")
        )
        eps = tuple(project.get("entry-points", {}).get("flowcoro", {}))
        extras = tuple(e for e in project.get("optional-dependencies", {}) if e != "test")
        found[project["name"]] = Dist(project["name"], pyproject.parent, deps, eps, extras)
    return found


def closure(names: list[str], dists: dict[str, Dist]) -> set[str]:
    """The distributions a set of installs brings along through declared dependencies."""
    todo, seen = list(names), set()
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(dists[name].flowcoro_deps)
    return seen


def uv() -> str:
    found = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    if not Path(found).exists():
        raise RuntimeError("uv is missing from the dev environment (./tools/dev install)")
    return found


def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "FLOWCORO_"))}
    env.update(kw.pop("env", {}))  # type: ignore[call-overload]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, **kw)  # type: ignore[call-overload, no-any-return]


def build_wheels(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    for dist in distributions().values():
        result = run([uv(), "build", "--wheel", "--quiet", "-o", str(out), str(dist.path)])
        if result.returncode != 0:
            raise RuntimeError(f"building {dist.name} failed:\n{result.stderr}")
    return out


class Venv:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.python = str(path / "bin" / "python")
        result = run([uv(), "venv", "--quiet", "--python", sys.executable, str(path)])
        if result.returncode != 0:
            raise RuntimeError(result.stderr)

    def install(self, *requirements: str, wheels: Path) -> None:
        cmd = [uv(), "pip", "install", "--quiet", "--python", self.python]
        result = run([*cmd, "--find-links", str(wheels), *requirements])
        if result.returncode != 0:
            raise RuntimeError(f"install of {requirements} failed:\n{result.stderr}")

    def installed_flowcoro(self) -> set[str]:
        result = run([uv(), "pip", "list", "--format=json", "--python", self.python])
        return {p["name"] for p in json.loads(result.stdout) if p["name"].startswith("flowcoro-")}

    def flowcoro(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return run([str(self.path / "bin" / "flowcoro"), *args], env=env or {})

    def python_code(self, code: str) -> subprocess.CompletedProcess[str]:
        return run([self.python, "-c", code])
