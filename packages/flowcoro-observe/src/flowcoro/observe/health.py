"""Liveness and readiness answers, independent of the HTTP layer (routes wrap them).

- Liveness (``/healthz``): the event loop answered; nothing else is checked, so a slow database
  never gets a healthy process restarted.
- Readiness (``/readyz``): 503 at once when the app is draining (shutdown began: the load balancer
  must stop sending traffic before connections close); otherwise every registered health check
  runs concurrently, each within its own timeout and all within ``readiness_timeout``, and the
  answer is 200 only when all pass. The JSON body lists each check with its result and latency.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

__all__ = ["JSON_CONTENT_TYPE", "liveness", "readiness"]

JSON_CONTENT_TYPE = "application/json"


def _body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def liveness() -> tuple[int, bytes]:
    return 200, _body({"status": "ok"})


async def readiness(app: Any, timeout: float = 5.0) -> tuple[int, bytes]:
    """``(status, JSON body)`` for the app's readiness now."""
    if getattr(app, "draining", False):
        return 503, _body({"status": "draining", "checks": {}})
    health = getattr(app, "health", None)
    if health is None:
        return 200, _body({"status": "ok", "checks": {}})
    started = time.perf_counter()
    try:
        # wait_for, not asyncio.timeout(): an HTTP handler may start eagerly, outside a task.
        report = await asyncio.wait_for(health.run(), timeout)
    except TimeoutError:
        payload = {"status": "failing", "checks": {}, "detail": f"timed out after {timeout:g}s"}
        return 503, _body(payload)
    payload = report.as_dict()
    payload["latency_ms"] = round((time.perf_counter() - started) * 1000, 3)
    if getattr(app, "draining", False):  # shutdown began while the checks ran
        payload["status"] = "draining"
        return 503, _body(payload)
    return (200 if report.ok else 503), _body(payload)
