"""Every hook specification of every distribution is documented in that distribution's README."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted(ROOT.glob("packages/*/src/flowcoro/*/hookspecs.py"))


def hook_names(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    return [
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.name.startswith("flowcoro_")
    ]


def test_core_has_hookspecs() -> None:
    assert any(p.parts[-2] == "core" for p in SPECS)


@pytest.mark.parametrize("spec_file", SPECS, ids=[p.parts[-2] for p in SPECS])
def test_every_hook_is_documented(spec_file: Path) -> None:
    readme = spec_file.parents[3] / "README.md"
    text = readme.read_text()
    names = hook_names(spec_file)
    assert names, f"{spec_file} declares no hooks"
    missing = [name for name in names if f"`{name}" not in text]
    assert not missing, f"{readme.relative_to(ROOT)} does not document: {', '.join(missing)}"


def test_every_hook_has_a_docstring() -> None:
    for spec_file in SPECS:
        tree = ast.parse(spec_file.read_text())
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("flowcoro_"):
                assert ast.get_docstring(node), f"{spec_file}: {node.name} has no docstring"
