"""Pub/sub and the core broker interface against the real Redis (and a fake server for the
reconnect-retry path)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from flowcoro.core.abc import Message, PubSubBroker
from flowcoro.core.errors import ClosedResourceError, ConfigError
from flowcoro.core.settings import Setting, load_settings
from flowcoro.db import plugin
from flowcoro.db.errors import DBConnectionError, DBTimeoutError
from flowcoro.db.redis import PubSub, Redis, RedisBroker, RedisConfig, RedisSubscription


def settings(url: str | None, backlog: int | None = None) -> object:
    kwargs: dict[str, object] = {}
    if url is not None:
        kwargs["redis_url"] = url
    if backlog is not None:
        kwargs["pubsub_backlog"] = backlog
    specs = [*plugin.redis_settings(), Setting("pubsub_backlog", int, None)]
    return load_settings(specs, kwargs=kwargs, env={})


async def until(predicate: object, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.01)


async def next_message(sub: RedisSubscription, timeout: float = 5.0) -> Message:
    async with asyncio.timeout(timeout):
        return await sub.get()


def test_plugin_registers_the_broker() -> None:
    assert plugin.flowcoro_pubsub_brokers() == [RedisBroker]
    assert RedisBroker.PLUGIN_NAME == "redis"
    assert issubclass(RedisBroker, PubSubBroker)
    [setting] = plugin.redis_settings()
    assert setting.key == "redis_url"
    with pytest.raises(ConfigError, match="redis_url"):
        RedisBroker.from_settings(settings(None))  # type: ignore[arg-type]


async def test_publish_subscribe_across_two_clients_with_patterns(redis_url: str) -> None:
    ch = f"fct:{uuid.uuid4().hex[:10]}"
    publisher = RedisBroker.from_settings(settings(redis_url))  # type: ignore[arg-type]
    subscriber = RedisBroker.from_settings(settings(redis_url, backlog=50))  # type: ignore[arg-type]
    try:
        sub = await subscriber.subscribe(ch + ":a", patterns=(ch + ":p.*",))
        also = await subscriber.subscribe(ch + ":a")
        assert await publisher.publish(ch + ":a", b"one") == 1  # one connection subscribes
        assert await publisher.publish(ch + ":p.x", b"two") == 1
        assert await next_message(sub) == Message(ch + ":a", b"one")
        assert await next_message(sub) == Message(ch + ":p.x", b"two", ch + ":p.*")
        assert await next_message(also) == Message(ch + ":a", b"one")
        await also.aclose()
        await also.aclose()
        assert await publisher.publish(ch + ":a", b"three") == 1  # still subscribed for `sub`
        assert (await next_message(sub)).data == b"three"
        async with sub:
            pass
        await until(lambda: not subscriber.pubsub._channels)
        for _ in range(100):  # UNSUBSCRIBE was sent: nobody listens any more
            if await publisher.publish(ch + ":a", b"x") == 0:
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("still subscribed")
        with pytest.raises(ClosedResourceError):
            await sub.get()
        assert [m async for m in sub] == []
    finally:
        await subscriber.aclose()
        await publisher.aclose()
    with pytest.raises(ClosedResourceError):
        await subscriber.subscribe("x")


async def test_resubscribes_after_client_kill(redis_url: str) -> None:
    ch = f"fct:{uuid.uuid4().hex[:10]}"
    async with Redis.from_url(redis_url) as pub:
        broker = RedisBroker(pub)
        try:
            sub = await broker.subscribe(ch, patterns=(ch + ".*",))
            iterator = aiter(sub)
            assert await pub.publish(ch, b"before") == 1
            assert (await anext(iterator)).data == b"before"
            old_id = broker.pubsub.client_id
            assert old_id is not None
            assert broker.pubsub.connected
            assert await pub.execute("CLIENT", "KILL", "ID", old_id) == 1
            await until(lambda: broker.pubsub.reconnects == 1 and broker.pubsub.connected)
            assert broker.pubsub.client_id != old_id
            for _ in range(200):  # resubscription completes asynchronously
                if await pub.publish(ch, b"after") >= 1:
                    break
                await asyncio.sleep(0.01)
            assert (await anext(iterator)).data == b"after"
            await until(lambda: not broker.pubsub._confirm)
            assert await pub.publish(ch + ".x", b"pattern") == 1
            assert await anext(iterator) == Message(ch + ".x", b"pattern", ch + ".*")
        finally:
            await broker.aclose()
        assert not pub.closed  # the broker does not close a client it was given


async def test_slow_reader_drops_oldest(redis_url: str) -> None:
    ch = f"fct:{uuid.uuid4().hex[:10]}"
    async with Redis.from_url(redis_url) as pub:
        ps = pub.pubsub(backlog=3)
        try:
            sub = await ps.subscribe(ch)
            for i in range(10):
                await pub.publish(ch, str(i))
            await until(lambda: sub.dropped == 7)
            assert [(await sub.get()).data for _ in range(3)] == [b"7", b"8", b"9"]
        finally:
            await ps.aclose()
            await ps.aclose()


async def test_subscribe_validation_and_failures(unused_tcp_port: int) -> None:
    ps = PubSub(RedisConfig(port=unused_tcp_port, connect_timeout=1))
    with pytest.raises(ValueError, match="at least one"):
        await ps.subscribe()
    with pytest.raises(ValueError, match="non-empty"):
        await ps.subscribe("")
    with pytest.raises(DBConnectionError):
        await ps.subscribe("ch")
    assert ps._channels == {}
    await ps.aclose()
    with pytest.raises(ValueError, match="backlog"):
        PubSub(RedisConfig(), backlog=0)


@asynccontextmanager
async def scripted_server(script: list[str]) -> AsyncIterator[int]:
    """A fake Redis whose n-th connection follows script[n]: 'hangup' closes at once, 'silent'
    answers CLIENT ID and never confirms, 'normal' confirms and then sends one message."""
    count = 0
    writers: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal count
        mode = script[min(count, len(script) - 1)]
        count += 1
        writers.append(writer)
        try:
            if mode == "hangup":
                return
            await reader.readuntil(b"ID\r\n")
            writer.write(b":%d\r\n" % count)
            await reader.readuntil(b"SUBSCRIBE\r\n")
            await reader.readuntil(b"\r\n")
            await reader.readuntil(b"\r\n")
            if mode == "silent":
                await reader.read()
                return
            writer.write(b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n")
            writer.write(
                b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$%d\r\n%d\r\n" % (len(str(count)), count)
            )
            if mode == "drop":
                await asyncio.sleep(0.05)
                return
            await reader.read()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for w in writers:
            w.close()
        await server.wait_closed()
        await asyncio.sleep(0.01)


async def test_reconnect_retries_with_backoff() -> None:
    async with scripted_server(["drop", "hangup", "hangup", "normal"]) as port:
        ps = PubSub(RedisConfig(port=port))
        try:
            sub = await ps.subscribe("ch")
            assert (await next_message(sub)).data == b"1"
            assert (await next_message(sub)).data == b"4"  # after two failed attempts
            assert ps.reconnects == 1
        finally:
            await ps.aclose()


async def test_unconfirmed_subscription_times_out() -> None:
    async with scripted_server(["silent"]) as port:
        ps = PubSub(RedisConfig(port=port, command_timeout=0.2))
        try:
            with pytest.raises(DBTimeoutError, match="confirm"):
                await ps.subscribe("ch")
            assert ps._channels == {}
        finally:
            await ps.aclose()


@asynccontextmanager
async def raw_server(first_reply: bytes, then: bytes = b"") -> AsyncIterator[int]:
    """Answers CLIENT ID with ``first_reply``; after the next command sends ``then``."""
    writers: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        try:
            await reader.readuntil(b"ID\r\n")
            writer.write(first_reply)
            await reader.readuntil(b"SUBSCRIBE\r\n")
            writer.write(then)
            await reader.read()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for w in writers:
            w.close()
        await server.wait_closed()
        await asyncio.sleep(0.01)


async def test_pubsub_setup_and_protocol_failures() -> None:
    async with raw_server(b"-ERR no client id\r\n") as port:
        ps = PubSub(RedisConfig(port=port))
        with pytest.raises(Exception, match="no client id"):
            await ps.subscribe("ch")
        await ps.aclose()
    async with raw_server(b"") as port:
        ps = PubSub(RedisConfig(port=port, connect_timeout=0.2))
        with pytest.raises(DBTimeoutError, match="CLIENT ID"):
            await ps.subscribe("ch")
        await ps.aclose()
    for garbage in (b"!bad\r\n", b"+UNSOLICITED\r\n"):
        async with raw_server(b":7\r\n", garbage) as port:
            ps = PubSub(RedisConfig(port=port, command_timeout=2))
            with pytest.raises(DBConnectionError, match="reply"):
                await ps.subscribe("ch")
            await ps.aclose()


async def test_close_wakes_readers_and_stops_reconnecting() -> None:
    async with scripted_server(["drop", "hangup"]) as port:
        ps = PubSub(RedisConfig(port=port))
        sub = await ps.subscribe("ch")
        assert (await next_message(sub)).data == b"1"
        reader = asyncio.create_task(sub.get())
        await until(lambda: ps._connecting is not None)  # reconnecting, failing, backing off
        await ps.aclose()
        with pytest.raises(ClosedResourceError):
            await reader
        assert ps._connecting is None


async def test_app_picks_the_redis_broker_and_registers_health(redis_url: str) -> None:
    from flowcoro.core.app import App

    app = App(env={}, redis_url=redis_url)
    client = Redis.from_url(app.settings["redis_url"])
    app.add_component(client)
    ch = f"fct:{uuid.uuid4().hex[:10]}"
    async with app:
        broker = app.pubsub()
        assert isinstance(broker, RedisBroker)
        try:
            sub = await broker.subscribe(ch)
            assert await broker.publish(ch, b"via-app") == 1
            assert await next_message(sub) == Message(ch, b"via-app")
            report = await app.health.run()
            assert report.ok
            assert [c.name for c in report.checks if c.name == "redis"] == ["redis"]
        finally:
            await broker.aclose()
    assert client.closed


async def test_close_while_subscribing() -> None:
    async with scripted_server(["silent"]) as port:
        ps = PubSub(RedisConfig(port=port, connect_timeout=5))
        # CLIENT ID answered, confirmation never comes: the subscriber waits; closing ends it
        task = asyncio.create_task(ps.subscribe("ch"))
        await asyncio.sleep(0.1)
        await ps.aclose()
        with pytest.raises((ClosedResourceError, DBConnectionError)):
            await task
