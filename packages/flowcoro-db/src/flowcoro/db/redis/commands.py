"""The typed command surface, shared by the client, explicit pipelines and WATCH transactions.

Each method encodes its arguments and hands them to ``_execute``: on `Redis` it returns an
awaitable of the reply, on a `Pipeline` a future completed by ``execute()``. Replies are bytes
(``None`` for nil); conversions (``OK`` -> bool, score -> float, pairs -> dict) are noted in the
return types.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from flowcoro.db.redis._transforms import (
    to_bool,
    to_float,
    to_ok,
    to_pairs_dict,
    to_scored,
    to_set,
    to_str,
)

__all__ = ["Commands", "Key", "Value"]

Key = str | bytes
Value = str | bytes | int | float
Transform = Callable[[Any], Any] | None
_Set = set  # the `set` method shadows the builtin inside the class


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class Commands:
    """Common commands: strings, counters, keys and expiry, hashes, lists, sets, sorted sets,
    scripts, pub/sub publishing and streams."""

    __slots__ = ()

    def _execute(self, args: tuple[Any, ...], transform: Transform = None) -> Awaitable[Any]:
        raise NotImplementedError

    def _execute_blocking(
        self, args: tuple[Any, ...], server_timeout: float, transform: Transform = None
    ) -> Awaitable[Any]:
        raise NotImplementedError

    # -- connection ------------------------------------------------------------------------------
    def ping(self) -> Awaitable[bytes]:
        return self._execute((b"PING",))

    def echo(self, value: Value) -> Awaitable[bytes]:
        return self._execute((b"ECHO", value))

    # -- strings and counters --------------------------------------------------------------------
    def get(self, key: Key) -> Awaitable[bytes | None]:
        return self._execute((b"GET", key))

    def set(
        self,
        key: Key,
        value: Value,
        *,
        ex: float | None = None,
        nx: bool = False,
        xx: bool = False,
        keepttl: bool = False,
    ) -> Awaitable[bool]:
        """SET; ``ex`` in seconds (sub-second values use PX). False when NX/XX prevented it."""
        if ex is None and not (nx or xx or keepttl):
            return self._execute((b"SET", key, value), to_ok)
        args: list[Any] = [b"SET", key, value]
        if ex is not None:
            args += [b"PX", _ms(ex)]
        if nx:
            args.append(b"NX")
        if xx:
            args.append(b"XX")
        if keepttl:
            args.append(b"KEEPTTL")
        return self._execute(tuple(args), to_ok)

    def getdel(self, key: Key) -> Awaitable[bytes | None]:
        return self._execute((b"GETDEL", key))

    def mget(self, *keys: Key) -> Awaitable[list[bytes | None]]:
        return self._execute((b"MGET", *keys))

    def mset(self, mapping: Mapping[Key, Value]) -> Awaitable[bool]:
        return self._execute((b"MSET", *_flatten(mapping)), to_ok)

    def append(self, key: Key, value: Value) -> Awaitable[int]:
        return self._execute((b"APPEND", key, value))

    def strlen(self, key: Key) -> Awaitable[int]:
        return self._execute((b"STRLEN", key))

    def incr(self, key: Key, amount: int = 1) -> Awaitable[int]:
        if amount == 1:
            return self._execute((b"INCR", key))
        return self._execute((b"INCRBY", key, amount))

    def decr(self, key: Key, amount: int = 1) -> Awaitable[int]:
        return self._execute((b"DECRBY", key, amount))

    def incrbyfloat(self, key: Key, amount: float) -> Awaitable[float]:
        return self._execute((b"INCRBYFLOAT", key, amount), float)

    # -- keys and expiry -------------------------------------------------------------------------
    def delete(self, *keys: Key) -> Awaitable[int]:
        return self._execute((b"DEL", *keys))

    def unlink(self, *keys: Key) -> Awaitable[int]:
        return self._execute((b"UNLINK", *keys))

    def exists(self, *keys: Key) -> Awaitable[int]:
        return self._execute((b"EXISTS", *keys))

    def expire(self, key: Key, seconds: float) -> Awaitable[bool]:
        return self._execute((b"PEXPIRE", key, _ms(seconds)), to_bool)

    def persist(self, key: Key) -> Awaitable[bool]:
        return self._execute((b"PERSIST", key), to_bool)

    def ttl(self, key: Key) -> Awaitable[float | None]:
        """Seconds left; None when the key has no expiry or does not exist."""
        return self._execute((b"PTTL", key), _ttl)

    def type(self, key: Key) -> Awaitable[str]:
        return self._execute((b"TYPE", key), to_str)

    def rename(self, key: Key, new: Key) -> Awaitable[bool]:
        return self._execute((b"RENAME", key, new), to_ok)

    # -- hashes ----------------------------------------------------------------------------------
    def hget(self, key: Key, field: Key) -> Awaitable[bytes | None]:
        return self._execute((b"HGET", key, field))

    def hset(self, key: Key, mapping: Mapping[Key, Value]) -> Awaitable[int]:
        return self._execute((b"HSET", key, *_flatten(mapping)))

    def hmget(self, key: Key, *fields: Key) -> Awaitable[list[bytes | None]]:
        return self._execute((b"HMGET", key, *fields))

    def hgetall(self, key: Key) -> Awaitable[dict[bytes, bytes]]:
        return self._execute((b"HGETALL", key), to_pairs_dict)

    def hdel(self, key: Key, *fields: Key) -> Awaitable[int]:
        return self._execute((b"HDEL", key, *fields))

    def hexists(self, key: Key, field: Key) -> Awaitable[bool]:
        return self._execute((b"HEXISTS", key, field), to_bool)

    def hincrby(self, key: Key, field: Key, amount: int = 1) -> Awaitable[int]:
        return self._execute((b"HINCRBY", key, field, amount))

    def hkeys(self, key: Key) -> Awaitable[list[bytes]]:
        return self._execute((b"HKEYS", key))

    def hlen(self, key: Key) -> Awaitable[int]:
        return self._execute((b"HLEN", key))

    # -- lists -----------------------------------------------------------------------------------
    def lpush(self, key: Key, *values: Value) -> Awaitable[int]:
        return self._execute((b"LPUSH", key, *values))

    def rpush(self, key: Key, *values: Value) -> Awaitable[int]:
        return self._execute((b"RPUSH", key, *values))

    def lpop(self, key: Key) -> Awaitable[bytes | None]:
        return self._execute((b"LPOP", key))

    def rpop(self, key: Key) -> Awaitable[bytes | None]:
        return self._execute((b"RPOP", key))

    def lrange(self, key: Key, start: int = 0, stop: int = -1) -> Awaitable[list[bytes]]:
        return self._execute((b"LRANGE", key, start, stop))

    def llen(self, key: Key) -> Awaitable[int]:
        return self._execute((b"LLEN", key))

    def ltrim(self, key: Key, start: int, stop: int) -> Awaitable[bool]:
        return self._execute((b"LTRIM", key, start, stop), to_ok)

    def lrem(self, key: Key, count: int, value: Value) -> Awaitable[int]:
        return self._execute((b"LREM", key, count, value))

    def blpop(
        self, keys: Iterable[Key], timeout: float = 0
    ) -> Awaitable[tuple[bytes, bytes] | None]:
        """Blocking pop on a dedicated connection; ``timeout`` 0 waits until an element arrives
        (or the caller's deadline, which discards that connection)."""
        return self._execute_blocking((b"BLPOP", *keys, timeout), timeout, _pair)

    def brpop(
        self, keys: Iterable[Key], timeout: float = 0
    ) -> Awaitable[tuple[bytes, bytes] | None]:
        return self._execute_blocking((b"BRPOP", *keys, timeout), timeout, _pair)

    # -- sets ------------------------------------------------------------------------------------
    def sadd(self, key: Key, *members: Value) -> Awaitable[int]:
        return self._execute((b"SADD", key, *members))

    def srem(self, key: Key, *members: Value) -> Awaitable[int]:
        return self._execute((b"SREM", key, *members))

    def smembers(self, key: Key) -> Awaitable[_Set[bytes]]:
        return self._execute((b"SMEMBERS", key), to_set)

    def sismember(self, key: Key, member: Value) -> Awaitable[bool]:
        return self._execute((b"SISMEMBER", key, member), to_bool)

    def scard(self, key: Key) -> Awaitable[int]:
        return self._execute((b"SCARD", key))

    def sinter(self, *keys: Key) -> Awaitable[_Set[bytes]]:
        return self._execute((b"SINTER", *keys), to_set)

    def sunion(self, *keys: Key) -> Awaitable[_Set[bytes]]:
        return self._execute((b"SUNION", *keys), to_set)

    # -- sorted sets -----------------------------------------------------------------------------
    def zadd(
        self,
        key: Key,
        mapping: Mapping[Key, float],
        *,
        nx: bool = False,
        xx: bool = False,
        gt: bool = False,
        lt: bool = False,
        ch: bool = False,
    ) -> Awaitable[int]:
        flags = [
            f for f, on in ((b"NX", nx), (b"XX", xx), (b"GT", gt), (b"LT", lt), (b"CH", ch)) if on
        ]
        pairs: list[Any] = []
        for member, score in mapping.items():
            pairs += [score, member]
        return self._execute((b"ZADD", key, *flags, *pairs))

    def zrem(self, key: Key, *members: Value) -> Awaitable[int]:
        return self._execute((b"ZREM", key, *members))

    def zscore(self, key: Key, member: Value) -> Awaitable[float | None]:
        return self._execute((b"ZSCORE", key, member), to_float)

    def zincrby(self, key: Key, amount: float, member: Value) -> Awaitable[float]:
        return self._execute((b"ZINCRBY", key, amount, member), float)

    def zcard(self, key: Key) -> Awaitable[int]:
        return self._execute((b"ZCARD", key))

    def zcount(
        self, key: Key, low: float | str = "-inf", high: float | str = "+inf"
    ) -> Awaitable[int]:
        return self._execute((b"ZCOUNT", key, low, high))

    def zrank(self, key: Key, member: Value) -> Awaitable[int | None]:
        return self._execute((b"ZRANK", key, member))

    def zrange(self, key: Key, start: int = 0, stop: int = -1) -> Awaitable[list[bytes]]:
        return self._execute((b"ZRANGE", key, start, stop))

    def zrange_withscores(
        self, key: Key, start: int = 0, stop: int = -1
    ) -> Awaitable[list[tuple[bytes, float]]]:
        return self._execute((b"ZRANGE", key, start, stop, b"WITHSCORES"), to_scored)

    def zrangebyscore(
        self,
        key: Key,
        low: float | str,
        high: float | str,
        *,
        offset: int = 0,
        count: int | None = None,
    ) -> Awaitable[list[bytes]]:
        limit = () if count is None else (b"LIMIT", offset, count)
        return self._execute((b"ZRANGEBYSCORE", key, low, high, *limit))

    def zpopmin(self, key: Key, count: int = 1) -> Awaitable[list[tuple[bytes, float]]]:
        return self._execute((b"ZPOPMIN", key, count), to_scored)

    # -- scripts ---------------------------------------------------------------------------------
    def eval(
        self, script: str, keys: Iterable[Key] = (), args: Iterable[Value] = ()
    ) -> Awaitable[Any]:
        keys = tuple(keys)
        return self._execute((b"EVAL", script, len(keys), *keys, *args))

    def evalsha(
        self, sha: str, keys: Iterable[Key] = (), args: Iterable[Value] = ()
    ) -> Awaitable[Any]:
        keys = tuple(keys)
        return self._execute((b"EVALSHA", sha, len(keys), *keys, *args))

    def script_load(self, script: str) -> Awaitable[str]:
        return self._execute((b"SCRIPT", b"LOAD", script), to_str)

    # -- pub/sub (publishing; subscriptions use `PubSub`) ----------------------------------------
    def publish(self, channel: Key, data: Value) -> Awaitable[int]:
        return self._execute((b"PUBLISH", channel, data))

    # -- streams (consumer groups: see `ConsumerGroup`) ------------------------------------------
    def xadd(
        self,
        stream: Key,
        fields: Mapping[Key, Value],
        *,
        id: str = "*",
        maxlen: int | None = None,
        approximate: bool = True,
    ) -> Awaitable[str]:
        trim: tuple[Any, ...] = ()
        if maxlen is not None:
            trim = (b"MAXLEN", b"~", maxlen) if approximate else (b"MAXLEN", maxlen)
        return self._execute((b"XADD", stream, *trim, id, *_flatten(fields)), to_str)

    def xlen(self, stream: Key) -> Awaitable[int]:
        return self._execute((b"XLEN", stream))

    def xdel(self, stream: Key, *ids: str) -> Awaitable[int]:
        return self._execute((b"XDEL", stream, *ids))


def _flatten(mapping: Mapping[Key, Value]) -> list[Any]:
    if not mapping:
        raise ValueError("the mapping must not be empty")
    out: list[Any] = []
    for k, v in mapping.items():
        out += [k, v]
    return out


def _ttl(reply: Any) -> float | None:
    return None if reply < 0 else reply / 1000.0


def _pair(reply: Any) -> tuple[bytes, bytes] | None:
    return None if reply is None else (reply[0], reply[1])
