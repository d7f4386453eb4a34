"""`Row`: one result row, by column name (``row["id"]``, ``row.id``) or position (``row[0]``)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["Row"]

_OWN = frozenset(("_index", "_values"))


class Row(Mapping[str, Any]):
    """A light, read-only mapping of column name to value.

    Rows of one result share their column index, and each row keeps the driver's own row object
    (a tuple or a record), so building one costs a single small allocation. Iterating a row yields
    its column names, like any mapping; ``row.values()`` and ``tuple(row.values())`` give values.
    """

    __slots__ = ("_index", "_values")

    def __init__(self, index: Mapping[str, int], values: Any) -> None:
        self._index = index
        self._values = values

    def __getitem__(self, key: str | int) -> Any:
        if type(key) is int:
            return self._values[key]
        return self._values[self._index[key]]  # type: ignore[index]

    def __getattr__(self, name: str) -> Any:
        if name in _OWN:  # not yet set (copy, unpickle): never recurse
            raise AttributeError(name)
        try:
            return self._values[self._index[name]]
        except KeyError:
            raise AttributeError(f"row has no column {name!r}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Row):
            return dict(self.items()) == dict(other.items())
        if isinstance(other, Mapping):
            return dict(self.items()) == dict(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={self._values[i]!r}" for k, i in self._index.items())
        return f"Row({inner})"
