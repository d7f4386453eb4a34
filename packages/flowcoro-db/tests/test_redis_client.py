"""The client against the real Redis: commands, automatic pipelining, pipelines, transactions,
WATCH, deadlines, failures. Keys carry a unique prefix per test (the server is shared)."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from flowcoro.core.deadline import deadline
from flowcoro.core.errors import ClosedResourceError, DeadlineExceeded
from flowcoro.db.errors import AuthenticationError, DBConnectionError, DBTimeoutError
from flowcoro.db.redis import Redis, RedisCommandError, RedisConfig, WatchError
from flowcoro.db.redis.pipeline import Watch


@asynccontextmanager
async def connected(url: str, **options: Any) -> AsyncIterator[tuple[Redis, str]]:
    r = Redis.from_url(url, **options)
    prefix = f"fct:{uuid.uuid4().hex[:12]}:"
    try:
        yield r, prefix
    finally:
        await r.aclose()
        async with Redis.from_url(url) as cleaner:
            keys = [k async for k in cleaner.scan_iter(prefix + "*", count=1000)]
            if keys:
                await cleaner.delete(*keys)


async def test_strings_counters_and_keys(redis_url: str) -> None:
    async with connected(redis_url) as (r, p):
        assert await r.ping() == b"PONG"
        assert await r.echo("hi") == b"hi"
        assert await r.set(p + "s", "v1") is True
        assert await r.get(p + "s") == b"v1"
        assert await r.get(p + "missing") is None
        assert await r.set(p + "s", "v2", nx=True) is False
        assert await r.set(p + "s", "v2", xx=True) is True
        assert await r.set(p + "nx", b"\x00\xff", nx=True) is True
        assert await r.get(p + "nx") == b"\x00\xff"
        assert await r.set(p + "e", 1, ex=100) is True
        ttl = await r.ttl(p + "e")
        assert ttl is not None
        assert 99 < ttl <= 100
        assert await r.set(p + "e", 2, keepttl=True) is True
        assert await r.ttl(p + "e") is not None
        assert await r.persist(p + "e") is True
        assert await r.ttl(p + "e") is None
        assert await r.expire(p + "e", 50) is True
        assert await r.mset({p + "a": 1, p + "b": 2.5}) is True
        assert await r.mget(p + "a", p + "b", p + "zz") == [b"1", b"2.5", None]
        assert await r.append(p + "a", "23") == 3
        assert await r.strlen(p + "a") == 3
        assert await r.incr(p + "n") == 1
        assert await r.incr(p + "n", 10) == 11
        assert await r.decr(p + "n", 2) == 9
        assert await r.incrbyfloat(p + "f", 1.25) == 1.25
        assert await r.getdel(p + "f") == b"1.25"
        assert await r.exists(p + "a", p + "b", p + "f") == 2
        assert await r.type(p + "a") == "string"
        assert await r.rename(p + "a", p + "a2") is True
        assert await r.delete(p + "a2") == 1
        assert await r.unlink(p + "b", p + "nothing") == 1
        with pytest.raises(ValueError, match="empty"):
            await r.mset({})


async def test_hashes_lists_sets_sorted_sets(redis_url: str) -> None:
    async with connected(redis_url) as (r, p):
        h = p + "h"
        assert await r.hset(h, {"a": 1, "b": "x"}) == 2
        assert await r.hget(h, "a") == b"1"
        assert await r.hmget(h, "a", "zz") == [b"1", None]
        assert await r.hgetall(h) == {b"a": b"1", b"b": b"x"}
        assert await r.hexists(h, "b") is True
        assert await r.hincrby(h, "a", 5) == 6
        assert sorted(await r.hkeys(h)) == [b"a", b"b"]
        assert await r.hlen(h) == 2
        assert await r.hdel(h, "b") == 1
        lst = p + "l"
        assert await r.rpush(lst, "a", "b", "c") == 3
        assert await r.lpush(lst, "z") == 4
        assert await r.lrange(lst) == [b"z", b"a", b"b", b"c"]
        assert await r.llen(lst) == 4
        assert await r.lpop(lst) == b"z"
        assert await r.rpop(lst) == b"c"
        assert await r.lrem(lst, 0, "a") == 1
        assert await r.ltrim(lst, 0, 0) is True
        assert await r.blpop([lst], 1) == (lst.encode(), b"b")
        assert await r.rpush(lst, "q") == 1
        assert await r.brpop([lst], 1) == (lst.encode(), b"q")
        assert await r.brpop([lst], 0.05) is None
        s = p + "s"
        assert await r.sadd(s, "a", "b", "c") == 3
        assert await r.srem(s, "c") == 1
        assert await r.smembers(s) == {b"a", b"b"}
        assert await r.sismember(s, "a") is True
        assert await r.scard(s) == 2
        await r.sadd(p + "s2", "b", "d")
        assert await r.sinter(s, p + "s2") == {b"b"}
        assert await r.sunion(s, p + "s2") == {b"a", b"b", b"d"}
        z = p + "z"
        assert await r.zadd(z, {"a": 1, "b": 2.5, "c": 3}) == 3
        assert await r.zadd(z, {"a": 0.5}, xx=True, ch=True) == 1
        assert await r.zadd(z, {"a": 9}, nx=True) == 0
        assert await r.zadd(z, {"a": 0.1}, gt=True, ch=True) == 0
        assert await r.zadd(z, {"a": 0.1}, lt=True, ch=True) == 1
        assert await r.zscore(z, "b") == 2.5
        assert await r.zscore(z, "nope") is None
        assert await r.zincrby(z, 1, "c") == 4.0
        assert await r.zcard(z) == 3
        assert await r.zcount(z, 1, "+inf") == 2
        assert await r.zrank(z, "b") == 1
        assert await r.zrank(z, "nope") is None
        assert await r.zrange(z) == [b"a", b"b", b"c"]
        assert await r.zrange_withscores(z, 0, 0) == [(b"a", 0.1)]
        assert await r.zrangebyscore(z, 1, 10) == [b"b", b"c"]
        assert await r.zrangebyscore(z, "-inf", "+inf", offset=1, count=1) == [b"b"]
        assert await r.zpopmin(z) == [(b"a", 0.1)]
        assert await r.zrem(z, "b") == 1


async def test_scripts_scan_and_generic_execute(redis_url: str) -> None:
    async with connected(redis_url) as (r, p):
        assert await r.eval("return {KEYS[1], ARGV[1]}", [p + "k"], ["v"]) == [
            (p + "k").encode(),
            b"v",
        ]
        source = f"-- {uuid.uuid4().hex}\nreturn redis.call('INCRBY', KEYS[1], ARGV[1])"
        script = r.register_script(source)
        assert await script([p + "c"], [2]) == 2  # NOSCRIPT -> EVAL fallback
        assert await script([p + "c"], [3]) == 5  # cached now: EVALSHA
        assert await r.script_load(source) == script.sha
        assert await r.evalsha(script.sha, [p + "c"], [1]) == 6
        with pytest.raises(RedisCommandError) as info:
            await r.eval("return redis.error_reply('MYERR boom')")
        assert info.value.code == "MYERR"
        for i in range(30):
            await r.set(f"{p}scan:{i}", i)
        keys = {k async for k in r.scan_iter(p + "scan:*", count=7)}
        assert len(keys) == 30
        typed = {k async for k in r.scan_iter(p + "*", type="hash")}
        assert typed == set()
        await r.hset(p + "h", {f"f{i}": i for i in range(20)})
        assert len({f async for f, _ in r.hscan_iter(p + "h", count=5)}) == 20
        await r.sadd(p + "s", *range(20))
        assert len({m async for m in r.sscan_iter(p + "s", "1*")}) == 11
        await r.zadd(p + "z", {f"m{i}": i for i in range(5)})
        assert sorted([s async for _, s in r.zscan_iter(p + "z")]) == [0.0, 1.0, 2.0, 3.0, 4.0]
        assert await r.execute("SET", p + "g", "1") == b"OK"
        assert await r.execute(b"object", "encoding", p + "g") == b"int"
        assert await r.execute("BLPOP", p + "nolist", "0.05") is None
        assert await r.execute("XREAD", "BLOCK", "10", "STREAMS", p + "xs", "$") is None
        for bad in ("SUBSCRIBE", "multi", b"WATCH", "select"):
            with pytest.raises(ValueError, match="shared connection"):
                await r.execute(bad, "x")
        with pytest.raises(ValueError, match="command name"):
            await r.execute()
        with pytest.raises(TypeError, match="command name"):
            await r.execute(5)
        with pytest.raises(TypeError):
            await r.set(p + "x", None)  # type: ignore[arg-type]


async def test_auto_pipelining_1000_tasks_with_random_cancellations(redis_url: str) -> None:
    rng = random.Random(1234)
    async with connected(redis_url) as (r, p):
        await r.ping()
        results: dict[int, bytes | None] = {}

        async def worker(i: int) -> None:
            key, value = f"{p}k{i}", f"value-{i}-{uuid.uuid4().hex}"
            assert await r.set(key, value) is True
            for _ in range(3):
                got = await r.get(key)
                assert got == value.encode(), (i, got)
            results[i] = await r.getdel(key)
            assert results[i] == value.encode()

        tasks = [asyncio.create_task(worker(i)) for i in range(1000)]
        cancelled: set[int] = set()
        for _ in range(6):  # cancel at several points: before sending, in flight, between commands
            for i in rng.sample(range(1000), 60):
                if not tasks[i].done():
                    tasks[i].cancel()
                    cancelled.add(i)
            await asyncio.sleep(0)
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        for i, outcome in enumerate(outcomes):
            if isinstance(outcome, asyncio.CancelledError):
                assert i in cancelled
            else:
                assert outcome is None, (i, outcome)
        survivors = [i for i, o in enumerate(outcomes) if o is None]
        assert len(survivors) > 300
        assert all(results[i] is not None for i in survivors)
        stats = r.statistics()
        assert stats.batch_size_max > 50
        assert stats.batches < stats.commands
        assert stats.discarded_replies > 0
        assert stats.errors == 0
        # The connection is still in step: a fresh round trip per key gives that key's value.
        await asyncio.gather(*(r.set(f"{p}after{i}", i) for i in range(200)))
        got = await asyncio.gather(*(r.get(f"{p}after{i}") for i in range(200)))
        assert got == [str(i).encode() for i in range(200)]
        assert r.statistics().connections_opened == 1


async def test_error_reply_fails_only_its_own_command(redis_url: str) -> None:
    async with connected(redis_url) as (r, p):
        await r.set(p + "str", "x")
        got = await asyncio.gather(
            r.get(p + "str"),
            r.hgetall(p + "str"),
            r.incr(p + "str"),
            r.get(p + "str"),
            return_exceptions=True,
        )
        assert got[0] == b"x"
        assert got[3] == b"x"
        assert isinstance(got[1], RedisCommandError)
        assert got[1].code == "WRONGTYPE"
        assert isinstance(got[2], RedisCommandError)
        assert got[2].code == "ERR"
        assert r.statistics().errors == 2


async def test_explicit_pipeline(redis_url: str) -> None:
    async with connected(redis_url) as (r, p):
        async with r.pipeline() as pipe:
            assert await pipe.execute() == []
            first = pipe.set(p + "a", 1)
            pipe.incr(p + "a")
            pipe.hgetall(p + "a")  # WRONGTYPE: fails alone
            pipe.execute_command("GET", p + "a")
            assert len(pipe) == 4
            results = await pipe.execute(raise_on_error=False)
            assert results[:2] == [True, 2]
            assert results[3] == b"2"
            assert isinstance(results[2], RedisCommandError)
            assert await first is True
            pipe.get(p + "a")
            pipe.hgetall(p + "a")
            with pytest.raises(RedisCommandError, match="WRONGTYPE"):
                await pipe.execute()
            dropped = pipe.get(p + "a")
        assert dropped.cancelled()  # leaving the block forgets unsent commands
        pipe = r.pipeline()
        with pytest.raises(ValueError, match="block the shared connection"):
            pipe.blpop([p + "l"])
        big = r.pipeline()
        for i in range(500):
            big.set(f"{p}b{i}", i)
        assert await big.execute() == [True] * 500
        # a pipeline cancelled in flight: its replies are consumed, the connection stays in step
        before = r.statistics().discarded_replies
        doomed = r.pipeline()
        for i in range(300):
            doomed.get(f"{p}b{i}")
        task = asyncio.create_task(doomed.execute())
        await asyncio.sleep(0)  # the task has queued the batch and awaits its replies
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        got = await asyncio.gather(*(r.get(f"{p}b{i}") for i in range(0, 500, 7)))
        assert got == [str(i).encode() for i in range(0, 500, 7)]
        assert r.statistics().discarded_replies == before + 300


async def test_multi_exec_transactions(redis_url: str) -> None:
    async with connected(redis_url) as (r, p):
        tx = r.pipeline(transaction=True)
        tx.set(p + "a", 1)
        tx.incr(p + "a")
        tx.hgetall(p + "a")  # runtime error inside EXEC: only this one fails
        tx.brpop([p + "empty"], 1)  # blocking commands do not block inside MULTI
        results = await tx.execute(raise_on_error=False)
        assert results[:2] == [True, 2]
        assert results[3] is None
        assert isinstance(results[2], RedisCommandError)
        tx.set(p + "a", 5)
        tx.execute_command("NOSUCHCOMMAND")  # queue-time error aborts everything
        with pytest.raises(RedisCommandError, match="unknown command"):
            await tx.execute()
        assert await r.get(p + "a") == b"2"


async def test_watch_conflict_and_retry(redis_url: str) -> None:
    async with connected(redis_url) as (r, p), connected(redis_url) as (other, _):
        key = p + "counter"
        await r.set(key, 10)
        async with r.watch(key) as w:
            value = int(await w.get(key) or 0)
            await other.set(key, 100)  # a concurrent writer
            tx = w.multi()
            tx.set(key, value + 1)
            with pytest.raises(WatchError):
                await tx.execute()
        assert await r.get(key) == b"100"
        attempts = 0

        async def bump(w: Watch) -> int:
            nonlocal attempts
            attempts += 1
            current = int(await w.get(key) or 0)
            if attempts == 1:
                await other.incr(key)  # conflict on the first attempt only
            tx = w.multi()
            tx.set(key, current + 1)
            await tx.execute()
            return current + 1

        assert await r.transaction(bump, key) == 102
        assert len(r._idle) == 1  # the conflicting attempt's connection was reused, in step
        assert attempts == 2
        assert await r.get(key) == b"102"

        async def always_conflicts(w: Watch) -> None:
            await other.incr(key)
            tx = w.multi()
            tx.get(key)
            await tx.execute()

        with pytest.raises(WatchError, match="2 times"):
            await r.transaction(always_conflicts, key, retries=2)
        with pytest.raises(ValueError, match="at least one key"):
            r.watch()
        async with r.watch(key) as w:
            with pytest.raises(ValueError, match="blocking"):
                await w.blpop([key])
        with pytest.raises(ClosedResourceError):
            await w.get(key)
        with pytest.raises(RuntimeError):
            async with r.watch(key) as w:
                raise RuntimeError("user code failed")
        assert w._conn is None
        # a watch left without EXEC is cleared before its connection is reused
        async with r.watch(key):
            pass
        async with r.watch(key) as w:
            await other.set(key, 1)
            tx = w.multi()
            tx.get(key)
            with pytest.raises(WatchError):
                await tx.execute()


async def test_database_index_and_client_name(redis_url: str) -> None:
    base = redis_url.rsplit("/", 1)[0]
    name = f"fct-{uuid.uuid4().hex[:8]}"
    async with (
        connected(f"{base}/1?client_name={name}") as (r1, p),
        connected(redis_url) as (r0, _),
    ):
        assert await r1.execute("CLIENT", "GETNAME") == name.encode()
        await r1.set(p + "only-in-1", 1)
        assert await r0.get(p + "only-in-1") is None
        assert await r1.delete(p + "only-in-1") == 1


async def test_server_unavailable(unused_tcp_port: int) -> None:
    r = Redis.from_url(f"redis://127.0.0.1:{unused_tcp_port}/0", connect_timeout=1)
    try:
        with pytest.raises(DBConnectionError, match=f"127.0.0.1:{unused_tcp_port}"):
            await r.get("k")
        assert r._backoff > 0
        with pytest.raises(DBConnectionError):  # the retry waits out the backoff, then fails
            await r.get("k")
        with pytest.raises(DBConnectionError):
            async with r.dedicated():
                pass
        with pytest.raises(DBConnectionError):
            await r.health_check()
        stats = r.statistics()
        assert stats.connections_opened == 0
        assert stats.connections_open == 0
    finally:
        await r.aclose()
    with pytest.raises(ClosedResourceError):
        await r.get("k")
    with pytest.raises(ClosedResourceError):
        await r.blpop(["k"])


async def test_wrong_password_and_acl_user(redis_url: str) -> None:
    user = f"fct-user-{uuid.uuid4().hex[:8]}"
    secret = uuid.uuid4().hex
    host = redis_url.split("://", 1)[1]
    async with Redis.from_url(redis_url) as admin:
        await admin.execute("ACL", "SETUSER", user, "on", f">{secret}", "~fct:*", "+@all")
        try:
            bad = Redis.from_url(f"redis://{user}:wrong@{host}")
            with pytest.raises(AuthenticationError, match="refused the credentials"):
                await bad.get("fct:x")
            await bad.aclose()
            async with Redis.from_url(f"redis://{user}:{secret}@{host}") as good:
                assert await good.execute("ACL", "WHOAMI") == user.encode()
                with pytest.raises(RedisCommandError, match="NOPERM"):
                    await good.get("not-allowed")
        finally:
            assert await admin.execute("ACL", "DELUSER", user) == 1


async def test_deadline_expiring_mid_command(redis_url: str) -> None:
    async with connected(redis_url, max_dedicated=1) as (r, p):
        loop = asyncio.get_running_loop()
        start = loop.time()
        with deadline(0.3), pytest.raises(DBTimeoutError, match="BLPOP"):
            await r.blpop([p + "empty"], 0)
        assert 0.25 < loop.time() - start < 2
        assert r.statistics().timeouts == 1
        assert r._idle == []  # the blocked connection was discarded, not reused
        start = loop.time()
        with pytest.raises(DeadlineExceeded):
            async with deadline(0.2):
                await r.blpop([p + "empty"], 0)
        assert loop.time() - start < 2
        with deadline(0.0), pytest.raises(DeadlineExceeded):
            await r.get(p + "k")
        # the only dedicated connection stays busy: the second waiter times out on the limit
        holder = asyncio.create_task(r.blpop([p + "wake"], 0))
        await asyncio.sleep(0.1)
        with deadline(0.2), pytest.raises(DBTimeoutError, match="max_dedicated"):
            await r.blpop([p + "other"], 0)
        await r.rpush(p + "wake", "go")
        assert await holder == ((p + "wake").encode(), b"go")
        assert len(r._idle) == 1  # answered: in step, kept for reuse
        assert await r.get(p + "k") is None


async def test_connection_killed_reconnects(redis_url: str) -> None:
    async with connected(redis_url) as (r, p), connected(redis_url) as (admin, _):
        client_id = await r.execute("CLIENT", "ID")
        assert await admin.execute("CLIENT", "KILL", "ID", client_id) == 1
        for _ in range(100):
            if r._conn is None or r._conn.closed:
                break
            await asyncio.sleep(0.01)
        assert await r.set(p + "k", "v") is True
        assert await r.execute("CLIENT", "ID") != client_id
        stats = r.statistics()
        assert stats.reconnects == 1
        assert stats.connections_opened == 2


async def test_health_check_component_and_lifecycle(redis_url: str) -> None:
    r = Redis(RedisConfig.from_url(redis_url), name="cache")
    assert r in Redis.instances()
    assert r.name == "cache"
    assert "redis://" in repr(r)
    await r.start(app=None)  # type: ignore[arg-type]
    await r.connect()  # already connected: no-op
    await r.health_check()
    sub = r.pubsub(backlog=5)
    assert sub.backlog == 5
    await sub.aclose()
    pending = [asyncio.create_task(r.get("fct:nothing")) for _ in range(10)]
    await asyncio.sleep(0)
    await r.stop()  # commands already sent still get their replies
    assert await asyncio.gather(*pending) == [None] * 10
    assert r.closed
    assert "closed" in repr(r)
    await r.aclose()
    assert r not in Redis.instances()
    stats = r.statistics()
    assert stats.connections_open == 0
    assert stats.commands >= 11


async def test_max_pending_backpressure(redis_url: str) -> None:
    async with connected(redis_url, max_pending=5) as (r, p):
        await r.set(p + "k", "v")
        got = await asyncio.gather(*(r.get(p + "k") for _ in range(200)))
        assert got == [b"v"] * 200
        assert r.statistics().batch_size_max <= 5


async def test_close_fails_blocked_commands_and_unsent_pipelines(redis_url: str) -> None:
    r = Redis.from_url(redis_url)
    key = f"fct:{uuid.uuid4().hex[:12]}:never"
    blocked = asyncio.create_task(r.blpop([key], 0))
    await asyncio.sleep(0.1)
    await r.aclose()
    with pytest.raises(DBConnectionError, match="closed"):
        await blocked
    pipe = r.pipeline()
    queued = pipe.get(key)
    with pytest.raises(ClosedResourceError):
        await pipe.execute()
    assert queued.cancelled()


async def test_pure_python_fallback_end_to_end(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without hiredis the client uses PyReader and py_pack_command: same behaviour."""
    from flowcoro.db.redis import _resp, client, connection, pipeline, pubsub

    monkeypatch.setattr(connection, "make_reader", _resp.PyReader)
    for module in (connection, client, pipeline, pubsub):
        monkeypatch.setattr(module, "pack_command", _resp.py_pack_command)
    async with connected(redis_url) as (r, p):
        values = {f"{p}{i}": f"v{i}" * (i * 50) for i in range(100)}
        await asyncio.gather(*(r.set(k, v) for k, v in values.items()))
        got = await asyncio.gather(*(r.get(k) for k in values))
        assert got == [v.encode() for v in values.values()]
        assert isinstance(r._conn._reader, _resp.PyReader)  # type: ignore[union-attr]
        with pytest.raises(RedisCommandError, match="WRONGTYPE"):
            await r.hgetall(f"{p}1")
        tx = r.pipeline(transaction=True)
        tx.incr(p + "n")
        tx.lrange(p + "nolist")
        assert await tx.execute() == [1, []]


async def test_dedicated_connection_for_connection_state(redis_url: str) -> None:
    async with connected(redis_url) as (r, _):
        await r.ping()
        async with r.dedicated() as conn:
            assert await r.run_on(conn, ("CLIENT", "SETNAME", "fct-scoped"), 1.0) == b"OK"
            assert await r.run_on(conn, ("CLIENT", "GETNAME"), 1.0) == b"fct-scoped"
        assert conn.closed  # its state is unknown: never reused
        assert await r.execute("CLIENT", "GETNAME") is None
        assert r._idle == []
