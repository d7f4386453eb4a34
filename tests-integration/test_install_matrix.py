"""Each distribution installs and loads with only what it declares: alone with core, and all
together. Fresh environments, wheels built from the local tree, dependencies from the index."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _matrix import Venv, build_wheels, closure, distributions

DISTS = distributions()
ROWS = [["flowcoro-core"]] + [[name] for name in DISTS if name != "flowcoro-core"] + [list(DISTS)]

# Walks every module of the installed distributions; the pytest plugin needs pytest, which is a
# test tool, not a dependency.
IMPORT_ALL = """
import importlib, pkgutil, sys
names = sys.argv[1:] if len(sys.argv) > 1 else None
import flowcoro
for info in pkgutil.walk_packages(flowcoro.__path__, "flowcoro."):
    if info.name.endswith(".testing"):
        continue
    importlib.import_module(info.name)
print("ok")
"""


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheels(tmp_path_factory.mktemp("wheels"))


@pytest.mark.parametrize("row", ROWS, ids=["+".join(r) if len(r) < 3 else "all" for r in ROWS])
def test_distribution_installs_alone_with_what_it_declares(
    row: list[str], wheels: Path, tmp_path: Path
) -> None:
    everything = len(row) > 1
    venv = Venv(tmp_path / "venv")
    requirements = [
        f"{name}[{','.join(DISTS[name].extras)}]" if everything and DISTS[name].extras else name
        for name in row
    ]
    venv.install(*requirements, wheels=wheels)

    expected = closure(row, DISTS)
    assert venv.installed_flowcoro() == expected

    listing = venv.flowcoro("plugins", "--json")
    assert listing.returncode == 0, listing.stderr
    data = json.loads(listing.stdout)
    plugins = {p["name"]: p for p in data["plugins"]}
    expected_plugins = {"core"} | {ep for name in expected for ep in DISTS[name].entry_points}
    assert set(plugins) == expected_plugins
    assert data["skipped"] == []
    for name in expected:
        for ep in DISTS[name].entry_points:
            assert plugins[ep]["distribution"] == name
            assert plugins[ep]["version"] == "0.1.0"

    if everything:
        walk = venv.python_code(IMPORT_ALL)
        assert walk.returncode == 0, walk.stderr
    else:
        top = "flowcoro." + row[0].removeprefix("flowcoro-")
        imported = venv.python_code(f"import {top}, {top}.plugin; print('ok')")
        assert imported.returncode == 0, imported.stderr

    version = venv.flowcoro("version")
    assert version.returncode == 0
    assert sorted(version.stdout.split("\n"))[1:] == sorted(f"{n} 0.1.0" for n in expected)
