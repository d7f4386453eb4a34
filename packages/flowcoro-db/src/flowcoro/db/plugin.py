"""flowcoro-db's hook implementations (drivers, the Redis pub/sub broker, CLI commands)."""

from __future__ import annotations
