"""The README's first command: the demo runs with embedded defaults and every plugin installed,
runs the core pipeline, serves the web demo, and answers each of its endpoints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_demo_runs_the_pipeline_and_serves() -> None:
    cmd = [str(ROOT / "examples" / "demo" / "main.py"), "--check", "--port", "0", "--orders", "50"]
    result = subprocess.run(
        [sys.executable, *cmd], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "demo: 50 orders priced" in result.stdout
    assert "health ok" in result.stdout
    assert "serving on http://127.0.0.1:" in result.stdout
    checks = [line for line in result.stdout.splitlines() if line.startswith("check:")]
    assert checks
    assert all(line.endswith(" ok") for line in checks), checks
    assert "pipeline.done" in result.stderr
