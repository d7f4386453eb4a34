"""Reply conversions shared by the command surface and the stream helper (pure functions)."""

from __future__ import annotations

from typing import Any

__all__ = [
    "to_ok",
    "to_bool",
    "to_float",
    "to_pairs_dict",
    "to_set",
    "to_scored",
    "to_str",
    "to_str_list",
]


def to_ok(reply: Any) -> bool:
    """``+OK`` -> True; a nil reply (SET NX that did not set) -> False."""
    return reply is not None


def to_bool(reply: Any) -> bool:
    return bool(reply)


def to_float(reply: Any) -> float | None:
    return None if reply is None else float(reply)


def to_pairs_dict(reply: Any) -> dict[bytes, bytes]:
    it = iter(reply)
    return dict(zip(it, it, strict=True))


def to_set(reply: Any) -> set[bytes]:
    return set(reply)


def to_scored(reply: Any) -> list[tuple[bytes, float]]:
    it = iter(reply)
    return [(member, float(score)) for member, score in zip(it, it, strict=True)]


def to_str(reply: Any) -> str:
    return reply.decode() if isinstance(reply, bytes) else str(reply)


def to_str_list(reply: Any) -> list[str]:
    return [to_str(item) for item in reply]
