from __future__ import annotations

import sys
from pathlib import Path

# --import-mode=importlib does not put the test folder on sys.path; the helpers module is
# named uniquely so it cannot clash with another distribution's.
sys.path.insert(0, str(Path(__file__).resolve().parent))
