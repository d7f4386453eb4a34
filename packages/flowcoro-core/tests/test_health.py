from __future__ import annotations

import asyncio

import pytest

from flowcoro.core.health import HealthCheck, HealthRegistry


async def test_all_checks_pass_and_report_latency() -> None:
    reg = HealthRegistry()

    async def ok() -> None:
        await asyncio.sleep(0.01)

    async def detail() -> str:
        return "3 connections"

    reg.register("db", ok)
    reg.add(HealthCheck("cache", detail))
    report = await reg.run()
    assert report.ok
    by_name = {c.name: c for c in report.checks}
    assert by_name["db"].latency >= 0.009
    assert by_name["cache"].detail == "3 connections"
    body = report.as_dict()
    assert body["status"] == "ok"
    assert body["checks"]["db"]["ok"] is True


async def test_failures_raise_false_and_timeout_each_reported() -> None:
    reg = HealthRegistry()

    async def boom() -> None:
        raise ConnectionRefusedError("port 1 closed")

    async def false() -> bool:
        return False

    async def slow() -> None:
        await asyncio.sleep(10)

    async def inner_timeout() -> None:
        raise TimeoutError("driver said so")

    async def fine() -> None:
        return None

    reg.register("boom", boom)
    reg.register("false", false)
    reg.register("slow", slow, timeout=0.05)
    reg.register("inner", inner_timeout)
    reg.register("fine", fine)
    report = await asyncio.wait_for(reg.run(), 2)
    assert not report.ok
    by_name = {c.name: c for c in report.checks}
    assert by_name["boom"].detail == "ConnectionRefusedError: port 1 closed"
    assert by_name["false"].detail == "check returned False"
    assert by_name["slow"].detail == "timed out after 0.05s"
    assert by_name["inner"].detail == "TimeoutError: driver said so"
    assert by_name["fine"].ok
    assert report.as_dict()["status"] == "failing"


def test_registry_refuses_duplicates_and_bad_timeouts() -> None:
    reg = HealthRegistry()

    async def ok() -> None:
        return None

    reg.register("a", ok)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a", ok)
    with pytest.raises(ValueError, match="timeout must be positive"):
        reg.register("b", ok, timeout=0)
    assert reg.names() == ["a"]
    assert len(reg) == 1
    reg.unregister("a")
    reg.unregister("a")
    assert len(reg) == 0
