"""`Headers`: a case-insensitive, multi-valued, read-only view of HTTP headers."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Union

__all__ = ["Headers", "HeadersType", "check_header"]

HeadersType = Union["Headers", Mapping[str, str], Iterable[tuple[str, str]]]


def check_header(name: str, value: str) -> None:
    """Refuse header names/values that would split the request (CR, LF, NUL) or are empty."""
    if not isinstance(name, str) or not isinstance(value, str):
        raise TypeError(f"header {name!r}: names and values must be str, got {value!r}")
    if not name or any(c in name for c in "\r\n\x00: \t"):
        raise ValueError(f"header name {name!r} is empty or contains CR, LF, NUL, ':' or space")
    if "\r" in value or "\n" in value or "\x00" in value:
        raise ValueError(f"header {name!r}: the value contains CR, LF or NUL")


class Headers(Mapping[str, str]):
    """Headers in arrival order. ``h["name"]`` joins repeated values with ", " (except
    ``Set-Cookie``, use ``get_list``); lookups ignore case."""

    __slots__ = ("_index", "_items", "_raw")

    def __init__(self, headers: HeadersType | None = None) -> None:
        self._raw: list[tuple[bytes, bytes]] | None = None
        self._index: dict[str, list[str]] | None = None
        if headers is None:
            self._items: list[tuple[str, str]] | None = []
        elif isinstance(headers, Headers):
            self._items = list(headers.items_list())
        elif isinstance(headers, Mapping):
            self._items = [(k, v) for k, v in headers.items()]
        else:
            self._items = [(k, v) for k, v in headers]

    @classmethod
    def from_raw(cls, raw: list[tuple[bytes, bytes]]) -> Headers:
        """Wrap raw (name, value) byte pairs; decoded (latin-1) on first use."""
        self = cls.__new__(cls)
        self._raw = raw
        self._items = None
        self._index = None
        return self

    def items_list(self) -> list[tuple[str, str]]:
        """All (name, value) pairs, repeats included, names as sent."""
        items = self._items
        if items is None:
            items = self._items = [
                (k.decode("latin-1"), v.decode("latin-1")) for k, v in self._raw or ()
            ]
        return items

    def _lookup(self) -> dict[str, list[str]]:
        index = self._index
        if index is None:
            index = {}
            for k, v in self.items_list():
                index.setdefault(k.lower(), []).append(v)
            self._index = index
        return index

    def get_list(self, name: str) -> list[str]:
        """Every value of ``name`` (e.g. each ``Set-Cookie``), in order."""
        return list(self._lookup().get(name.lower(), ()))

    def __getitem__(self, name: str) -> str:
        values = self._lookup()[name.lower()]
        return values[0] if len(values) == 1 else ", ".join(values)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._lookup()

    def __iter__(self) -> Iterator[str]:
        return iter(self._lookup())

    def __len__(self) -> int:
        return len(self._lookup())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            return sorted(self.items_list()) == sorted(other.items_list())
        if isinstance(other, Mapping):
            return dict(self.items()) == {k.lower(): v for k, v in other.items()}
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({self.items_list()!r})"
