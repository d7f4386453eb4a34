"""JSON encoding: orjson when installed (the ``orjson`` extra), the standard library otherwise."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

__all__ = ["dumps", "loads", "BACKEND"]

dumps: Callable[[Any], bytes]
loads: Callable[[bytes | str], Any]

try:
    import orjson
except ImportError:  # pragma: no cover - exercised by the install matrix without the extra
    BACKEND = "json"
    _encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))

    def dumps(obj: Any) -> bytes:
        return _encoder.encode(obj).encode()

    loads = json.loads
else:
    BACKEND = "orjson"
    dumps = orjson.dumps
    loads = orjson.loads
