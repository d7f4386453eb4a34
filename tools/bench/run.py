"""Run FlowCoro's benchmarks against their peers: ``./tools/dev bench [NAME ...]``.

Each benchmark is ``tools/bench/<NAME>.py`` with a ``main(argv: list[str]) -> int``; it runs the
peer it compares against in the same run and prints a table with ratios. Without a name, all run.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def available() -> list[str]:
    names = (p.stem for p in HERE.glob("*.py"))
    return sorted(n for n in names if not n.startswith("_") and n != "run")


def run_one(name: str, argv: list[str]) -> int:
    path = HERE / f"{name}.py"
    if not path.exists():
        print(f"bench: no benchmark {name!r}; available: {', '.join(available())}", file=sys.stderr)
        return 2
    # Appended, not prepended: benchmark files named like packages (http.py, redis.py) must not
    # hide the real ones from the code they import.
    if str(HERE) not in sys.path:
        sys.path.append(str(HERE))
    spec = importlib.util.spec_from_file_location(f"flowcoro_bench_{name}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load benchmark {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    print(f"== bench {name} ==", flush=True)
    return int(module.main(argv))


def main(argv: list[str]) -> int:
    names = [a for a in argv if not a.startswith("-")]
    flags = [a for a in argv if a.startswith("-")]
    status = 0
    for name in names or available():
        status |= run_one(name, flags)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
