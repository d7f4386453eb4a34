"""The ``Date`` header line, formatted once per second rather than once per response."""

from __future__ import annotations

from email.utils import formatdate
from time import time

__all__ = ["date_line"]

_cache: list[object] = [0, b""]


def date_line() -> bytes:
    now = int(time())
    if now != _cache[0]:
        _cache[0] = now
        _cache[1] = b"date: " + formatdate(now, usegmt=True).encode("ascii") + b"\r\n"
    line = _cache[1]
    assert isinstance(line, bytes)
    return line
