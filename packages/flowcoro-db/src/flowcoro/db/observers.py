"""Query observers: what ``flowcoro_db_query_observers`` returns, and how the clients call them.

A `Database` and a Redis client ask the hook once, when they are built, and keep the observers in
a tuple; with none registered a statement pays one truth test. With observers each SQL statement
(each attempt's whole call, pool wait included) and each Redis command, explicit pipeline
(``"PIPELINE"``) or MULTI/EXEC batch (``"MULTI"``) calls ``query_started(info)`` before it runs and
``query_finished(token, error)`` after it, also when it fails or is cancelled (``error`` is then
the exception, `asyncio.CancelledError` included). Observers run synchronously on the event loop:
keep them cheap. One that raises is logged once and otherwise ignored; the query goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, NamedTuple, Protocol, TypeVar

__all__ = [
    "InfoCache",
    "QueryInfo",
    "QueryObserver",
    "load_observers",
    "observed",
    "operation_of",
]

T = TypeVar("T")

log = logging.getLogger("flowcoro.db")

_FAILED: Any = object()  # the token of an observer whose query_started raised
_logged: set[str] = set()  # observer classes already logged (once each)


class QueryInfo(NamedTuple):
    """One statement or command, as observers see it. Never carries argument values."""

    system: str  # "postgresql", "mysql", "sqlite", "redis"
    operation: str | None  # "SELECT", "BEGIN", "GET", "PIPELINE", "MULTI"
    statement: str | None  # the parametrized SQL sent to the driver; None for Redis
    namespace: str | None  # the database name (SQLite: the file), or the Redis db index
    server_address: str | None
    server_port: int | None
    pool_name: str | None  # the core pool's name ("db:<name>"), or the Redis client's name


class QueryObserver(Protocol):
    def query_started(self, info: QueryInfo) -> Any:
        """Called before the statement runs; the result is handed back to `query_finished`."""

    def query_finished(self, token: Any, error: BaseException | None) -> None:
        """Called once it ended: ``error`` is what it raised (None on success)."""


def load_observers() -> tuple[QueryObserver, ...]:
    """Ask the plugin host's ``flowcoro_db_query_observers`` hook (wiring time only)."""
    from flowcoro.core.plugins import flatten, get_plugins

    hook = getattr(get_plugins().hook, "flowcoro_db_query_observers", None)
    if hook is None:  # flowcoro-db's plugin (and so its hook specification) is not loaded
        return ()
    return tuple(flatten(hook()))


def operation_of(sql: str) -> str | None:
    """The statement's first keyword, upper-cased (``"SELECT"``), or None when there is none."""
    head = sql.lstrip(" \t\r\n(").split(None, 1)
    if not head:
        return None
    word = head[0]
    end = 0
    while end < len(word) and (word[end].isalpha() or word[end] == "_"):
        end += 1
    return word[:end].upper() or None


async def observed(
    observers: Sequence[QueryObserver], info: QueryInfo, work: Coroutine[Any, Any, T]
) -> T:
    """Await ``work`` between the observers' ``query_started`` and ``query_finished``."""
    error: BaseException | None = None
    if len(observers) == 1:  # the usual case (flowcoro-observe alone): no token list
        observer = observers[0]
        try:
            token = observer.query_started(info)
        except Exception as exc:
            _log_failure(observer, exc)
            return await work
        except BaseException:
            work.close()  # never awaited: close it quietly
            raise
        try:
            return await work
        except BaseException as exc:
            error = exc
            raise
        finally:
            try:
                observer.query_finished(token, error)
            except Exception as exc:
                _log_failure(observer, exc)
    try:
        tokens = started(observers, info)
    except BaseException:
        work.close()
        raise
    try:
        return await work
    except BaseException as exc:
        error = exc
        raise
    finally:
        finished(observers, tokens, error)


class InfoCache:
    """`QueryInfo` per statement text or command name, built once: statements repeat. Bounded:
    past ``limit`` distinct keys new ones are built each time rather than kept."""

    __slots__ = ("_infos", "_limit", "_make")

    def __init__(self, make: Callable[[Any], QueryInfo], limit: int = 1024) -> None:
        self._make = make
        self._limit = limit
        self._infos: dict[Any, QueryInfo] = {}

    def get(self, key: Any) -> QueryInfo:
        info = self._infos.get(key)
        if info is None:
            info = self._make(key)
            if len(self._infos) < self._limit:
                self._infos[key] = info
        return info


def started(observers: Sequence[QueryObserver], info: QueryInfo) -> list[Any]:
    tokens = []
    for observer in observers:
        try:
            tokens.append(observer.query_started(info))
        except Exception as exc:
            _log_failure(observer, exc)
            tokens.append(_FAILED)
    return tokens


def finished(
    observers: Sequence[QueryObserver], tokens: list[Any], error: BaseException | None
) -> None:
    for observer, token in zip(observers, tokens, strict=True):
        if token is _FAILED:
            continue
        try:
            observer.query_finished(token, error)
        except Exception as exc:
            _log_failure(observer, exc)


def _log_failure(observer: object, exc: Exception) -> None:
    name = f"{type(observer).__module__}.{type(observer).__qualname__}"
    if name not in _logged:
        _logged.add(name)
        log.error("query observer %s failed (ignored from now on in the logs): %r", name, exc)
