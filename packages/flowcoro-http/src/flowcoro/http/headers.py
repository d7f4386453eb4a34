"""`Headers`: the request's header fields, case-insensitive and multi-valued, decoded lazily.

The protocol hands over the raw ``(lower-case name, value)`` byte pairs it parsed; nothing is
decoded until a handler asks. Values are decoded as latin-1 (RFC 9110 allows only visible ASCII
and obs-text; latin-1 round-trips every byte).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from flowcoro.http.errors import HeaderValueError

__all__ = ["Headers", "check_header"]

RawHeaders = list[tuple[bytes, bytes]]

_BAD = ("\r", "\n", "\x00")
_TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


class Headers(Mapping[str, str]):
    """Read-only header fields. ``headers["x"]`` is the first value; `getlist` gives them all."""

    __slots__ = ("_index", "_raw")

    def __init__(self, raw: RawHeaders | Mapping[str, str] | None = None) -> None:
        if raw is None:
            raw = []
        elif isinstance(raw, Mapping):
            raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in raw.items()]
        self._raw: RawHeaders = raw
        self._index: dict[str, list[str]] | None = None

    @property
    def raw(self) -> RawHeaders:
        """The ``(lower-case name, value)`` byte pairs as received, in order."""
        return self._raw

    def _build(self) -> dict[str, list[str]]:
        index: dict[str, list[str]] = {}
        for name, value in self._raw:
            key = name.decode("latin-1")
            values = index.get(key)
            if values is None:
                index[key] = [value.decode("latin-1")]
            else:
                values.append(value.decode("latin-1"))
        self._index = index
        return index

    def __getitem__(self, key: str) -> str:
        index = self._index if self._index is not None else self._build()
        return index[key.lower()][0]

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        index = self._index if self._index is not None else self._build()
        values = index.get(key.lower())
        return values[0] if values else default

    def getlist(self, key: str) -> list[str]:
        index = self._index if self._index is not None else self._build()
        return list(index.get(key.lower(), ()))

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        index = self._index if self._index is not None else self._build()
        return key.lower() in index

    def __iter__(self) -> Iterator[str]:
        index = self._index if self._index is not None else self._build()
        return iter(index)

    def __len__(self) -> int:
        index = self._index if self._index is not None else self._build()
        return len(index)

    def multi_items(self) -> list[tuple[str, str]]:
        return [(n.decode("latin-1"), v.decode("latin-1")) for n, v in self._raw]

    def __repr__(self) -> str:
        return f"Headers({self.multi_items()!r})"


def check_header(name: str, value: str) -> tuple[bytes, bytes]:
    """Encode one response header, refusing what would split the response or break framing."""
    if not name or not all(c in _TOKEN for c in name.encode("latin-1", "replace")):
        raise HeaderValueError(f"header name {name!r} is not a valid token")
    if any(c in value for c in _BAD):
        raise HeaderValueError(f"header {name!r}: CR, LF and NUL are not allowed in a value")
    try:
        encoded = value.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise HeaderValueError(f"header {name!r}: the value is not latin-1 text") from exc
    return name.lower().encode("latin-1"), encoded
