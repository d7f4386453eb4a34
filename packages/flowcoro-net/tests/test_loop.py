from __future__ import annotations

import asyncio
import logging

import pytest

from flowcoro.net import InvalidLimit, loop_kind, new_event_loop
from flowcoro.net.loop import LOOP_ENV


def test_loop_choice(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv(LOOP_ENV, raising=False)
    assert loop_kind() == "uvloop"  # Linux with uvloop installed
    assert loop_kind("asyncio") == "asyncio"
    monkeypatch.setenv(LOOP_ENV, "asyncio")
    assert loop_kind() == "asyncio"
    assert loop_kind("uvloop") == "uvloop"  # the argument wins over the environment
    monkeypatch.setenv(LOOP_ENV, "tokio")
    with pytest.raises(InvalidLimit, match="loop"):
        loop_kind()
    caplog.set_level(logging.INFO, "flowcoro.net")
    for kind in ("asyncio", "uvloop"):
        loop = new_event_loop(kind)
        try:
            is_uvloop = type(loop).__module__.startswith("uvloop")
            assert is_uvloop == (kind == "uvloop")
            assert isinstance(loop, asyncio.AbstractEventLoop)
        finally:
            loop.close()
