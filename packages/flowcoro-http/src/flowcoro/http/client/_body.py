"""Encoding request bodies: bytes, str, JSON, form data, (async) iterators of bytes."""

from __future__ import annotations

import json as _stdlib_json
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from typing import Any, TypeAlias, cast
from urllib.parse import urlencode

__all__ = ["ContentType", "encode_body", "dumps_json", "loads_json", "StreamBody"]

ContentType: TypeAlias = (
    bytes | bytearray | memoryview | str | AsyncIterable[bytes] | Iterable[bytes]
)
StreamBody: TypeAlias = AsyncIterable[bytes] | Iterable[bytes]

_orjson: Any
try:  # orjson is optional (the ``orjson`` extra); the stdlib is the fallback
    import orjson as _orjson
except ImportError:  # pragma: no cover - depends on the environment
    _orjson = None


def dumps_json(value: Any) -> bytes:
    if _orjson is not None:
        encoded: bytes = _orjson.dumps(value)
        return encoded
    return _stdlib_json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def loads_json(data: bytes) -> Any:
    if _orjson is not None:
        return _orjson.loads(data)
    return _stdlib_json.loads(data)  # pragma: no cover - depends on the environment


def encode_body(
    content: ContentType | None, data: Mapping[str, Any] | None, json: Any
) -> tuple[bytes | StreamBody | None, str | None]:
    """(body, default content type). The body is bytes (length known) or a stream (chunked)."""
    given = sum(x is not None for x in (content, data)) + (json is not _UNSET)
    if given > 1:
        raise TypeError("request: pass at most one of 'content', 'data' and 'json'")
    if json is not _UNSET:
        return dumps_json(json), "application/json"
    if data is not None:
        if not isinstance(data, Mapping):
            raise TypeError(f"request: 'data' must be a mapping of form fields, got {data!r}")
        pairs: list[tuple[str, str]] = []
        for key, value in data.items():
            values = value if isinstance(value, list | tuple) else [value]
            pairs.extend((str(key), "" if v is None else str(v)) for v in values)
        return urlencode(pairs).encode(), "application/x-www-form-urlencoded"
    if content is None:
        return None, None
    if isinstance(content, bytes):
        return content, None
    if isinstance(content, bytearray | memoryview):
        return bytes(content), None
    if isinstance(content, str):
        return content.encode(), "text/plain; charset=utf-8"
    if isinstance(content, AsyncIterable | Iterable):
        return cast(StreamBody, content), None
    raise TypeError(
        "request: 'content' must be bytes, str or an (async) iterable of bytes, "
        f"got {type(content).__name__}"
    )


async def iterate(body: StreamBody) -> AsyncIterator[bytes]:
    """Iterate a sync or async body, checking each chunk is bytes."""
    if isinstance(body, AsyncIterable):
        async for chunk in body:
            yield _as_bytes(chunk)
    else:
        for chunk in body:
            yield _as_bytes(chunk)


def _as_bytes(chunk: object) -> bytes:
    if isinstance(chunk, bytes):
        return chunk
    if isinstance(chunk, bytearray | memoryview):
        return bytes(chunk)
    if isinstance(chunk, str):
        return chunk.encode()
    raise TypeError(f"request body: chunks must be bytes, got {type(chunk).__name__}")


class _Unset:
    __slots__ = ()

    def __repr__(self) -> str:
        return "UNSET"


_UNSET: Any = _Unset()
UNSET: Any = _UNSET
