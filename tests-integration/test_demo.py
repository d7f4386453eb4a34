"""The README's first command: the demo runs with embedded defaults and says what it did."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_demo_pipeline_runs_and_reports() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo" / "main.py"), "--orders", "50"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "demo: 50 orders priced" in result.stdout
    assert "health ok" in result.stdout
    assert "pipeline.done" in result.stderr
    assert "orders=50" in result.stderr
