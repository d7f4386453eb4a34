"""Bump every distribution to one version, in lockstep: ``python tools/bump_version.py 0.2.0``.

Siblings pin each other exactly (``flowcoro-core==0.1.0``) until the hook API is declared stable,
so a release moves every ``_version.py`` and every sibling pin together. ``--root`` points at
another checkout (the tests use a copy).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

VERSION = re.compile(r"^\d+\.\d+\.\d+(?:(?:a|b|rc)\d+)?(?:\.dev\d+)?$")
PIN = re.compile(r'"(flowcoro-[a-z]+)(\[[^\]]*\])?==[^";]+')
VERSION_LINE = re.compile(r'^__version__ = "[^"]*"$', re.MULTILINE)


def bump(root: Path, version: str) -> list[Path]:
    if not VERSION.match(version):
        raise ValueError(f"not a release version: {version!r} (expected e.g. 0.2.0 or 1.0.0rc1)")
    changed = []
    for pyproject in sorted(root.glob("packages/*/pyproject.toml")):
        text = pyproject.read_text()
        new = PIN.sub(lambda m: f'"{m[1]}{m[2] or ""}=={version}', text)
        if new != text:
            pyproject.write_text(new)
            changed.append(pyproject)
    for version_file in sorted(root.glob("packages/*/src/flowcoro/*/_version.py")):
        text = version_file.read_text()
        new = VERSION_LINE.sub(f'__version__ = "{version}"', text)
        if new != text:
            version_file.write_text(new)
            changed.append(version_file)
    return changed


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("version")
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    args = parser.parse_args(argv)
    try:
        changed = bump(args.root, args.version)
    except ValueError as exc:
        print(f"bump_version: {exc}", file=sys.stderr)
        return 2
    for path in changed:
        print(f"updated {path.relative_to(args.root)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
