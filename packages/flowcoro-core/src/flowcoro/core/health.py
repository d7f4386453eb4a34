"""The health-check registry behind readiness: every check runs concurrently, each bounded.

A check is an async callable; it passes when it returns anything but ``False`` and fails when it
returns ``False``, raises, or outlives its timeout. Results carry each check's latency.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

__all__ = ["CheckResult", "HealthCheck", "HealthRegistry", "HealthReport"]

CheckFn = Callable[[], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class HealthCheck:
    name: str
    check: CheckFn
    timeout: float = 2.0


class CheckResult(NamedTuple):
    name: str
    ok: bool
    latency: float
    detail: str = ""


class HealthReport(NamedTuple):
    ok: bool
    checks: list[CheckResult]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, as the readiness endpoint returns it."""
        return {
            "status": "ok" if self.ok else "failing",
            "checks": {
                c.name: {"ok": c.ok, "latency_ms": round(c.latency * 1000, 3), "detail": c.detail}
                for c in self.checks
            },
        }


class HealthRegistry:
    __slots__ = ("_checks",)

    def __init__(self) -> None:
        self._checks: dict[str, HealthCheck] = {}

    def register(self, name: str, check: CheckFn, *, timeout: float = 2.0) -> None:
        if name in self._checks:
            raise ValueError(f"a health check named {name!r} is already registered")
        if timeout <= 0:
            raise ValueError(f"health check {name!r}: timeout must be positive, got {timeout!r}")
        self._checks[name] = HealthCheck(name, check, timeout)

    def add(self, check: HealthCheck) -> None:
        self.register(check.name, check.check, timeout=check.timeout)

    def unregister(self, name: str) -> None:
        self._checks.pop(name, None)

    def names(self) -> list[str]:
        return list(self._checks)

    def __len__(self) -> int:
        return len(self._checks)

    async def run(self) -> HealthReport:
        results = await asyncio.gather(*(_run_one(c) for c in self._checks.values()))
        return HealthReport(all(r.ok for r in results), list(results))


async def _run_one(check: HealthCheck) -> CheckResult:
    started = time.perf_counter()
    limit = asyncio.timeout(check.timeout)
    try:
        async with limit:
            outcome = await check.check()
    except Exception as exc:
        if isinstance(exc, TimeoutError) and limit.expired():
            detail = f"timed out after {check.timeout:g}s"
        else:
            detail = f"{type(exc).__name__}: {exc}"
        return CheckResult(check.name, False, time.perf_counter() - started, detail)
    latency = time.perf_counter() - started
    if outcome is False:
        return CheckResult(check.name, False, latency, "check returned False")
    return CheckResult(check.name, True, latency, "" if outcome in (None, True) else str(outcome))
