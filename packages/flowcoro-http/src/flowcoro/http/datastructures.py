"""`MultiDict`: query parameters and form fields (first value by key, `getlist` for all)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Generic, TypeVar

__all__ = ["MultiDict", "QueryParams", "State"]

V = TypeVar("V")


class MultiDict(Mapping[str, V], Generic[V]):
    __slots__ = ("_index", "_items")

    def __init__(self, items: Iterable[tuple[str, V]] = ()) -> None:
        self._items = list(items)
        index: dict[str, list[V]] = {}
        for key, value in self._items:
            index.setdefault(key, []).append(value)
        self._index = index

    def __getitem__(self, key: str) -> V:
        return self._index[key][0]

    def getlist(self, key: str) -> list[V]:
        return list(self._index.get(key, ()))

    def multi_items(self) -> list[tuple[str, V]]:
        return list(self._items)

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._items!r})"


class QueryParams(MultiDict[str]):
    __slots__ = ()


class State:
    """Request-scoped attributes set by middleware and handlers (``request.state.user = ...``)."""

    def __repr__(self) -> str:
        return f"State({vars(self)!r})"
