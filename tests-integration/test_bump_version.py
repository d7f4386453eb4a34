from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "tools" / "bump_version.py"


def copy_tree(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    for pyproject in ROOT.glob("packages/*/pyproject.toml"):
        dest = root / pyproject.relative_to(ROOT)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(pyproject, dest)
    for version in ROOT.glob("packages/*/src/flowcoro/*/_version.py"):
        dest = root / version.relative_to(ROOT)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(version, dest)
    return root


def test_every_version_and_sibling_pin_moves_together(tmp_path: Path) -> None:
    root = copy_tree(tmp_path)
    result = subprocess.run(
        [sys.executable, str(TOOL), "0.2.0rc1", "--root", str(root)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for version in root.glob("packages/*/src/flowcoro/*/_version.py"):
        assert version.read_text().strip() == '__version__ = "0.2.0rc1"'
    for pyproject in root.glob("packages/*/pyproject.toml"):
        project = tomllib.loads(pyproject.read_text())["project"]
        requirements = list(project.get("dependencies", []))
        for extra in project.get("optional-dependencies", {}).values():
            requirements += extra
        pins = [r for r in requirements if r.startswith("flowcoro-")]
        assert all("==0.2.0rc1" in pin for pin in pins), pins


def test_refuses_a_bad_version(tmp_path: Path) -> None:
    root = copy_tree(tmp_path)
    result = subprocess.run(
        [sys.executable, str(TOOL), "two", "--root", str(root)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "not a release version: 'two'" in result.stderr
    assert '"0.1.0"' in next(root.glob("packages/*/src/flowcoro/core/_version.py")).read_text()
