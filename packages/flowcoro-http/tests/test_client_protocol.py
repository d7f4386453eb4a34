"""The HTTP client against raw asyncio servers that break the protocol on purpose."""

from __future__ import annotations

import asyncio
import socket

import pytest
from _client_helpers import canned, ok, raw_server, read_request

from flowcoro.core import deadline
from flowcoro.http.client import (
    Client,
    ConnectError,
    ConnectTimeout,
    HeadersTooLarge,
    Limits,
    PoolTimeout,
    ProtocolError,
    ReadError,
    ReadTimeout,
    Timeout,
    WriteError,
    WriteTimeout,
)


def stats(client: Client):  # type: ignore[no-untyped-def]
    return next(iter(client.pool_statistics().values()))


async def test_malformed_status_line_is_a_protocol_error() -> None:
    async with raw_server(canned(b"HTTP/1.1 abc OK\r\n\r\n")) as url, Client() as client:
        with pytest.raises(ProtocolError, match="malformed response") as info:
            await client.get(f"{url}/x")
        assert (info.value.method, info.value.url) == ("GET", f"{url}/x")
        assert stats(client).in_use == 0


async def test_headers_over_the_limit() -> None:
    big = b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 5000 + b"\r\nContent-Length: 0\r\n\r\n"
    limits = Limits(max_header_size=1024)
    async with raw_server(canned(big)) as url, Client(limits=limits) as client:
        with pytest.raises(HeadersTooLarge, match="max_header_size=1024"):
            await client.get(url)
    # A header line that never ends is caught too (httptools would buffer it forever).
    endless = b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 5000
    async with raw_server(canned(endless)) as url, Client(limits=limits) as client:
        with pytest.raises(HeadersTooLarge):
            await client.get(url)


async def test_truncated_body_and_early_close() -> None:
    truncated = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"
    async with raw_server(canned(truncated, close=True)) as url, Client() as client:
        with pytest.raises(ReadError, match="before the response was complete") as info:
            await client.get(url)
        assert not info.value.retryable
        assert isinstance(info.value, ConnectionError)
        async with client.stream("GET", url) as r:
            with pytest.raises(ReadError):
                await r.read()
        assert stats(client).in_use == 0

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)

    async with raw_server(hang_up) as url, Client() as client:
        # A fresh connection closed without an answer is not retried (it was not reused).
        with pytest.raises(ReadError, match="without sending a response"):
            await client.get(url)


def _close_after_first(connections: list[int], answer_second: bool = False):  # type: ignore[no-untyped-def]
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        await read_request(reader)
        writer.write(ok(b"first"))
        await writer.drain()
        # Keep-alive was promised; now read the next request and hang up without answering.
        await read_request(reader)
        if answer_second:
            writer.write(ok(b"second"))
            await writer.drain()
            await reader.read()

    return handler


async def test_idempotent_request_retried_once_on_a_stale_kept_alive_connection() -> None:
    connections: list[int] = []
    async with raw_server(_close_after_first(connections)) as url, Client() as client:
        assert (await client.get(url)).content == b"first"
        # The server hangs up on the reused connection: retried once, on a new connection.
        assert (await client.get(url)).content == b"first"
        assert len(connections) == 2
        assert stats(client).in_use == 0
        # PUT with a bytes body is idempotent and replayable too.
        assert (await client.put(url, content=b"x")).content == b"first"
        assert len(connections) == 3


async def test_non_idempotent_request_is_not_retried() -> None:
    connections: list[int] = []
    async with raw_server(_close_after_first(connections)) as url, Client() as client:
        assert (await client.get(url)).content == b"first"
        with pytest.raises(ReadError, match="without sending a response") as info:
            await client.post(url, content=b"once")
        assert info.value.retryable  # it could have been, had POST been idempotent
        assert len(connections) == 1


async def test_retry_happens_exactly_once() -> None:
    async def always_hang_up_second(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await read_request(reader)
        writer.write(ok(b"first"))
        await writer.drain()
        await read_request(reader)

    limits = Limits(max_connections_per_host=2)
    async with raw_server(always_hang_up_second) as url, Client(limits=limits) as client:
        # Two kept-alive connections, both of which will hang up on their next request.
        a, b = await asyncio.gather(client.get(url), client.get(url))
        assert a.content == b.content == b"first"
        assert stats(client).idle == 2
        # The first stale connection fails; the retry skips the other kept-alive one (likely
        # stale as well) and goes to a new connection.
        assert (await client.get(url)).content == b"first"
        assert stats(client).created == 3
        results = await asyncio.gather(client.get(url), client.get(url))
        assert [r.content for r in results] == [b"first", b"first"]
        assert stats(client).in_use == 0


async def test_body_until_eof_and_http10() -> None:
    until_eof = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it"
    async with raw_server(canned(until_eof, close=True)) as url, Client() as client:
        r = await client.get(url)
        assert (r.content, r.http_version) == (b"all of it", "HTTP/1.0")
        assert stats(client).size == 0  # never reused
    keep = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nhi"
    async with raw_server(canned(keep, keep)) as url, Client() as client:
        assert (await client.get(url)).content == b"hi"
        assert (await client.get(url)).content == b"hi"
        assert stats(client).created == 1


async def test_informational_responses_are_skipped_and_upgrade_refused() -> None:
    interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
    async with raw_server(canned(interim + ok(b"final"))) as url, Client() as client:
        r = await client.get(url)
        assert (r.status_code, r.content) == (200, b"final")
        assert "link" not in r.headers
    upgrade = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    )
    async with raw_server(canned(upgrade)) as url, Client() as client:
        with pytest.raises(ProtocolError, match="switched protocols"):
            await client.get(url)


async def test_stray_bytes_make_a_connection_unusable() -> None:
    # Two responses for one request: the first is returned, the connection is not reused.
    async with raw_server(canned(ok(b"one") + ok(b"two"), ok(b"three"))) as url, Client() as c:
        assert (await c.get(url)).content == b"one"
        assert (await c.get(url)).content == b"one"
        assert stats(c).created == 2
    async with raw_server(canned(ok(b"one") + b"garbage", ok(b"three"))) as url, Client() as c:
        assert (await c.get(url)).content == b"one"
        assert (await c.get(url)).content == b"one"
        assert stats(c).created == 2

    async def unsolicited(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(ok(b"one"))
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"surprise")
        await writer.drain()
        await reader.read()

    async with raw_server(unsolicited) as url, Client() as client:
        assert (await client.get(url)).content == b"one"
        await asyncio.sleep(0.2)
        assert (await client.get(url)).content == b"one"
        assert stats(client).created == 2


async def test_head_response_with_length_keeps_the_connection() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
    async with raw_server(canned(head, ok(b"after"))) as url, Client() as client:
        r = await client.head(url)
        assert (r.headers["content-length"], r.content) == ("100", b"")
        assert (await client.get(url)).content == b"after"
        assert stats(client).created == 1


async def test_read_timeout_and_deadline_on_a_silent_server() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async with raw_server(silent) as url:
        async with Client(timeout=Timeout(read=0.1)) as client:
            with pytest.raises(ReadTimeout, match="within the read timeout"):
                await client.get(url)
            assert (stats(client).in_use, stats(client).size) == (0, 0)
        async with Client(timeout=Timeout(read=None)) as client:
            with deadline(0.1), pytest.raises(ReadTimeout, match="deadline"):
                await client.get(url)


async def test_connect_errors_name_the_request() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with Client() as client:
        with pytest.raises(ConnectError, match="cannot connect") as info:
            await client.get(f"http://127.0.0.1:{port}/path")
        assert info.value.url == f"http://127.0.0.1:{port}/path"
        assert info.value.method == "GET"
        assert isinstance(info.value.__cause__, OSError)
        assert stats(client).size == 0


async def test_connect_timeout_against_a_full_backlog() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):  # fill the accept queue so further SYNs are dropped
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            fillers.append(s)
        await asyncio.sleep(0.05)
        async with Client(timeout=Timeout(connect=0.2)) as client:
            with pytest.raises((ConnectTimeout, ConnectError)):
                await client.get(f"http://127.0.0.1:{port}/")
            with pytest.raises((ConnectTimeout, ConnectError)):
                await client.get(f"http://127.0.0.1:{port}/", timeout=Timeout(connect=0.1))
    finally:
        for s in fillers:
            s.close()
        listener.close()


async def test_pool_wait_bounded_by_deadline() -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(0.5)
        writer.write(ok())
        await writer.drain()
        await reader.read()

    limits = Limits(max_connections_per_host=1)
    async with raw_server(slow) as url, Client(limits=limits, timeout=Timeout(pool=None)) as c:
        first = asyncio.create_task(c.get(url))
        await asyncio.sleep(0.05)
        with deadline(0.1), pytest.raises(PoolTimeout, match="deadline"):
            await c.get(url)
        assert (await first).content == b"ok"


async def test_write_timeout_and_write_error() -> None:
    async def never_reads(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)

    async def chunks():
        for _ in range(200):
            yield b"x" * 1_000_000

    async with raw_server(never_reads) as url, Client(timeout=Timeout(write=0.2)) as client:
        with pytest.raises(WriteTimeout, match="did not take the request body"):
            await client.post(url, content=chunks())
        with pytest.raises(WriteTimeout):
            await client.post(url, content=b"y" * 50_000_000)

        async def paced():
            for _ in range(20):
                yield b"z" * 100
                await asyncio.sleep(0.02)

        with deadline(0.1), pytest.raises(WriteTimeout, match="deadline expired while"):
            await client.post(url, content=paced())
        assert stats(client).in_use == 0

    async def reads_then_closes(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await reader.read(10)
        writer.transport.abort()

    async def slow_chunks():
        for _ in range(50):
            yield b"x" * 1000
            await asyncio.sleep(0.01)

    async with raw_server(reads_then_closes) as url, Client() as client:
        with pytest.raises((WriteError, ReadError)):
            await client.post(url, content=slow_chunks())


async def test_early_response_stops_the_upload() -> None:
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 3\r\n\r\nbig")
        await writer.drain()
        await asyncio.sleep(0.3)

    sent = []

    async def slow_chunks():
        for _ in range(100):
            sent.append(1)
            yield b"x" * 1000
            await asyncio.sleep(0.01)

    async with raw_server(refuse) as url, Client() as client:
        r = await client.post(url, content=slow_chunks())
        assert (r.status_code, r.content) == (413, b"big")
        assert len(sent) < 100
        assert stats(client).size == 0  # the cut-short connection is not kept


async def test_response_connection_lost_mid_stream() -> None:
    async def half(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await writer.drain()
        await asyncio.sleep(0.1)

    async with raw_server(half) as url, Client() as client:
        async with client.stream("GET", url) as r:
            with pytest.raises(ReadError, match="before the response was complete"):
                async for _ in r.aiter_bytes():
                    pass
        assert stats(client).in_use == 0


async def test_flow_control_of_a_large_streamed_body() -> None:
    payload = b"y" * 4_000_000

    async def big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(payload))
        writer.write(payload)
        await writer.drain()
        await reader.read()

    async with raw_server(big) as url, Client() as client:
        async with client.stream("GET", url) as r:
            total = 0
            async for chunk in r.aiter_bytes():
                total += len(chunk)
                await asyncio.sleep(0.005)  # a slow consumer: reading is paused meanwhile
            assert total == len(payload)
        assert stats(client).idle == 1
