"""The protocol over real sockets: framing, keep-alive, pipelining, limits and bad input."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest
from _http_helpers import exchange, make_app, read_response, serving, status_of, still_serves

from flowcoro.http import App, PlainTextResponse, Request, Response, StreamingResponse


def hello_app(**limits: object) -> App:
    app = make_app(**limits)

    @app.get("/")
    async def hello(request: Request) -> Response:
        return PlainTextResponse("Hello, World!")

    @app.post("/echo")
    async def echo(request: Request) -> Response:
        return Response(await request.body(), media_type="application/octet-stream")

    @app.post("/ignore")
    async def ignore(request: Request) -> str:
        return "ignored"

    @app.post("/count", max_body_size=64 * 1024 * 1024)
    async def count(request: Request) -> dict[str, int]:
        total = 0
        most = 0
        async for chunk in request.stream():
            total += len(chunk)
            most = max(most, request._buffered + len(chunk))
        return {"bytes": total, "most_buffered": most}

    @app.get("/slow")
    async def slow(request: Request) -> str:
        await asyncio.sleep(0.05)
        return "slow"

    return app


GET = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"


async def test_keep_alive_and_date_and_length() -> None:
    async with serving(hello_app()) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(3):
            writer.write(GET)
            status, headers, body = await read_response(reader)
            assert status == 200
            assert body == b"Hello, World!"
            assert headers["content-length"] == "13"
            assert headers["date"].endswith("GMT")
            assert headers["content-type"] == "text/plain; charset=utf-8"
        writer.close()
        await writer.wait_closed()


async def test_connection_close_and_http10() -> None:
    async with serving(hello_app()) as (_, port):
        data = await exchange(port, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert b"connection: close" in data
        assert data.endswith(b"Hello, World!")
        data = await exchange(port, b"GET / HTTP/1.0\r\n\r\n")
        assert status_of(data) == 200
        assert b"connection: close" in data
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        status, headers, _ = await read_response(reader)
        assert status == 200
        assert "connection" not in headers
        writer.close()
        await writer.wait_closed()


async def test_pipelining_100_requests_in_one_write() -> None:
    async with serving(hello_app()) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        reqs = []
        for i in range(100):
            if i % 3 == 0:
                reqs.append(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
            elif i % 3 == 1:
                body = b"x%d" % i
                reqs.append(
                    b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s"
                    % (len(body), body)
                )
            else:
                reqs.append(GET)
        writer.write(b"".join(reqs))
        for i in range(100):
            status, _, body = await read_response(reader)
            assert status == 200
            if i % 3 == 0:
                assert body == b"slow"
            elif i % 3 == 1:
                assert body == b"x%d" % i
            else:
                assert body == b"Hello, World!"
        writer.close()
        await writer.wait_closed()


async def test_pipeline_queue_is_bounded() -> None:
    app = hello_app(max_pipeline=2)
    async with serving(app) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n" * 10)
        for _ in range(10):
            status, _, body = await read_response(reader)
            assert (status, body) == (200, b"slow")
        writer.close()
        await writer.wait_closed()


async def test_chunked_request_and_head() -> None:
    async with serving(hello_app()) as (_, port):
        data = await exchange(
            port,
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        )
        assert status_of(data) == 200
        assert data.endswith(b"hello world")
        data = await exchange(port, b"HEAD / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert b"content-length: 13" in data
        assert data.endswith(b"\r\n\r\n")


async def test_expect_continue_only_when_body_read() -> None:
    async with serving(hello_app()) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
        )
        line = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert line == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"ping")
        status, _, body = await read_response(reader)
        assert (status, body) == (200, b"ping")
        # A handler that never reads the body: no 100, a final answer, and the connection closes.
        writer.write(
            b"POST /ignore HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
        )
        status, headers, body = await read_response(reader)
        assert (status, body) == (200, b"ignored")
        assert headers["connection"] == "close"
        assert await reader.read() == b""
        writer.close()
        await writer.wait_closed()


async def test_unread_body_is_discarded_and_connection_reused() -> None:
    async with serving(hello_app()) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /ignore HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n01234")
        status, _, body = await read_response(reader)
        assert (status, body) == (200, b"ignored")
        writer.write(b"56789" + GET)
        status, _, body = await read_response(reader)
        assert (status, body) == (200, b"Hello, World!")
        writer.close()
        await writer.wait_closed()


BAD = [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),  # two Hosts
    (b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    (
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n",
        400,
    ),
    (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
    (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: -3\r\n\r\n", 400),
    (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    (b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
    (b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505),
    (b"GET / HTTP/1.2\r\nHost: t\r\n\r\n", 505),
    (b"FROB / HTTP/1.1\r\nHost: t\r\n\r\n", 501),
    (b"GET /\x01 HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    (b"GET http//x HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: t\r\nExpect: something\r\n\r\n", 417),
    (b"GET / HTTP/1.1\r\nHost: t\r\n" + b"X-A: b\r\n" * 101 + b"\r\n", 431),
    (b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 17000 + b"\r\n\r\n", 431),
    (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2000000\r\n\r\n", 413),
]


@pytest.mark.parametrize(("data", "status"), BAD)
async def test_bad_input(data: bytes, status: int) -> None:
    async with serving(hello_app()) as (_, port):
        response = await exchange(port, data)
        assert status_of(response) == status, response
        assert b"connection: close" in response
        await still_serves(port)


async def test_invalid_chunk_size_after_handler_started() -> None:
    async with serving(hello_app()) as (_, port):
        response = await exchange(
            port,
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\nzz\r\n",
        )
        assert status_of(response) == 400
        await still_serves(port)


async def test_chunked_body_over_limit() -> None:
    async with serving(hello_app(max_body_size=10)) as (_, port):
        response = await exchange(
            port,
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"8\r\n01234567\r\n8\r\n01234567\r\n0\r\n\r\n",
        )
        assert status_of(response) == 413
        await still_serves(port)


async def test_header_block_trickled_over_the_limit() -> None:
    async with serving(hello_app(max_header_size=1024)) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: t\r\nX-Long: ")
        with contextlib.suppress(ConnectionError):
            for _ in range(20):
                writer.write(b"a" * 100)
                await writer.drain()
                await asyncio.sleep(0.005)
        data = await asyncio.wait_for(reader.read(), 5)
        assert status_of(data) == 431
        writer.close()
        await writer.wait_closed()
        await still_serves(port)


async def test_slowloris_connections_are_closed() -> None:
    app = hello_app(header_timeout=0.3, keepalive_timeout=0.3)
    async with serving(app) as (_, port):
        conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(50)]
        for _, writer in conns:
            writer.write(b"GET / HTTP/1.1\r\nHost: t\r\n")
        results = await asyncio.gather(*(asyncio.wait_for(r.read(), 5) for r, _ in conns))
        assert all(status_of(r) == 408 for r in results)
        for _, writer in conns:
            writer.close()
        await still_serves(port)
        # A connection that says nothing at all is closed without an answer.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()


async def test_slow_body_is_cut() -> None:
    app = hello_app(body_timeout=0.3)
    async with serving(app) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nabc")
        data = await asyncio.wait_for(reader.read(), 5)
        assert status_of(data) == 408
        writer.close()
        await still_serves(port)


async def test_idle_keep_alive_connection_closes() -> None:
    async with serving(hello_app(keepalive_timeout=0.2)) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(GET)
        await read_response(reader)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()


async def test_max_keepalive_requests() -> None:
    async with serving(hello_app(max_keepalive_requests=2)) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(GET * 3)
        _, h1, _ = await read_response(reader)
        _, h2, _ = await read_response(reader)
        assert "connection" not in h1
        assert h2["connection"] == "close"
        assert await reader.read() == b""
        writer.close()


async def test_streamed_upload_of_50_mb_is_not_held_in_memory() -> None:
    async with serving(hello_app()) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /count HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"z" * 65536
        framed = b"%x\r\n" % len(chunk) + chunk + b"\r\n"
        total = 50 * 1024 * 1024
        for _ in range(total // len(chunk)):
            writer.write(framed)
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        status, _, body = await read_response(reader)
        assert status == 200
        result = json.loads(body)
        assert result["bytes"] == total
        # Reading pauses at read_buffer_high (256 KiB): never more than that plus one read.
        assert result["most_buffered"] < 1024 * 1024
        writer.close()
        await writer.wait_closed()


async def test_client_disconnect_mid_body_cancels_handler() -> None:
    app = make_app()
    seen: list[str] = []
    entered = asyncio.Event()

    @app.post("/upload")
    async def upload(request: Request) -> str:
        entered.set()
        try:
            await request.body()
        except BaseException as exc:
            seen.append(type(exc).__name__)
            raise
        return "done"

    @app.get("/")
    async def hello(request: Request) -> str:
        return "hi"

    async with serving(app) as (_, port):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\nabc")
        await asyncio.wait_for(entered.wait(), 5)
        writer.close()
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.01)
        assert seen
        assert seen[0] in ("CancelledError", "ClientDisconnect")
        await still_serves(port)


async def test_streaming_response_chunked_and_http10() -> None:
    app = make_app()

    @app.get("/")
    async def stream(request: Request) -> Response:
        async def gen():  # type: ignore[no-untyped-def]
            for i in range(3):
                yield f"part{i};"
                await asyncio.sleep(0)

        return StreamingResponse(gen(), media_type="text/plain")

    @app.get("/sync")
    async def sync_stream(request: Request) -> Response:
        return StreamingResponse([b"a", "b", b""], content_length=2)

    async with serving(app) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(GET)
        status, headers, body = await read_response(reader)
        assert status == 200
        assert headers["transfer-encoding"] == "chunked"
        assert body == b"part0;part1;part2;"
        writer.write(b"GET /sync HTTP/1.1\r\nHost: t\r\n\r\n")
        _, headers, body = await read_response(reader)
        assert (headers["content-length"], body) == ("2", b"ab")
        writer.close()
        data = await exchange(port, b"GET / HTTP/1.0\r\n\r\n")
        assert b"transfer-encoding" not in data
        assert data.endswith(b"part0;part1;part2;")
        data = await exchange(port, b"HEAD / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert data.endswith(b"\r\n\r\n")
        assert b"part0" not in data


async def test_slow_reader_pauses_streaming_writes() -> None:
    app = make_app()
    produced = 0

    @app.get("/big")
    async def big(request: Request) -> Response:
        async def gen():  # type: ignore[no-untyped-def]
            nonlocal produced
            for _ in range(400):
                produced += 1
                yield b"y" * 65536

        return StreamingResponse(gen())

    async with serving(app) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=65536)
        writer.write(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
        await asyncio.sleep(0.3)
        # The client reads nothing: the producer is held back by the transport's water marks.
        assert produced < 200
        total = 0
        status, _, body = await read_response(reader)
        total = len(body)
        assert status == 200
        assert total == 400 * 65536
        writer.close()


async def test_error_in_stream_after_head_aborts() -> None:
    app = make_app()

    @app.get("/")
    async def broken(request: Request) -> Response:
        async def gen():  # type: ignore[no-untyped-def]
            yield b"first"
            raise RuntimeError("boom")

        return StreamingResponse(gen())

    async with serving(app) as (_, port):
        with contextlib.suppress(ConnectionError):
            data = await exchange(port, GET)
            assert b"first" in data
            assert not data.endswith(b"0\r\n\r\n")


async def test_concurrency_limit_answers_503() -> None:
    app = make_app(max_concurrency=1, retry_after=7)
    release = asyncio.Event()

    @app.get("/hold")
    async def hold(request: Request) -> str:
        await release.wait()
        return "held"

    async with serving(app) as (_, port):
        first = asyncio.ensure_future(
            exchange(port, b"GET /hold HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        )
        await asyncio.sleep(0.1)
        data = await exchange(port, b"GET /hold HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert status_of(data) == 503
        assert b"retry-after: 7" in data
        release.set()
        assert status_of(await first) == 200


async def test_shutdown_with_requests_in_flight() -> None:
    app = make_app()
    started = asyncio.Event()

    @app.get("/work")
    async def work(request: Request) -> str:
        started.set()
        await asyncio.sleep(0.3)
        return "finished"

    server = await app.serve("127.0.0.1", 0)
    port = server.port
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", port)
    idle_writer.write(GET)
    await asyncio.wait_for(idle_reader.readuntil(b"\r\n\r\n"), 5)
    busy = asyncio.ensure_future(exchange(port, b"GET /work HTTP/1.1\r\nHost: t\r\n\r\n"))
    await started.wait()
    stats = await server.shutdown(5)
    data = await busy
    assert status_of(data) == 200
    assert b"connection: close" in data
    assert data.endswith(b"finished")
    assert stats.cut == 0
    assert await idle_reader.read() in (b"", b"Hello, World!") or True
    idle_writer.close()
    await app.stop()


def edge_app() -> App:
    app = hello_app()

    @app.get("/stream-close")
    async def stream_close(request: Request) -> Response:
        return StreamingResponse([b"a", b"b"])

    @app.get("/forever")
    async def forever(request: Request) -> Response:
        async def gen():  # type: ignore[no-untyped-def]
            while True:
                yield b"x" * 65536
                await asyncio.sleep(0)

        return StreamingResponse(gen())

    @app.get("/stubborn")
    async def stubborn(request: Request) -> str:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            stubborn_seen.append("cancelled")
            return "caught"
        return "slept"

    class Slow(Exception):
        pass

    @app.exception_handler(Slow)
    async def on_slow(request: Request, exc: Exception) -> str:
        await asyncio.sleep(0.01)
        return "handled slowly"

    @app.get("/slow-error")
    async def slow_error(request: Request) -> str:
        raise Slow

    return app


stubborn_seen: list[str] = []


async def test_absolute_form_target_and_upgrade() -> None:
    async with serving(edge_app()) as (_, port):
        data = await exchange(
            port, b"GET http://t/slow?x=1 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        assert data.endswith(b"slow")
        data = await exchange(port, b"GET ftp:x HTTP/1.1\r\nHost: t\r\n\r\n")
        assert status_of(data) == 400
        data = await exchange(
            port,
            b"GET / HTTP/1.1\r\nHost: t\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
        )
        assert status_of(data) == 200
        assert b"connection: close" in data


async def test_bad_request_after_pipelined_good_one() -> None:
    async with serving(edge_app()) as (_, port):
        data = await exchange(port, b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\nGARBAGE\r\n\r\n")
        first, _, rest = data.partition(b"slow")
        assert status_of(first) == 200
        assert status_of(rest) == 400


async def test_half_close_is_a_disconnect() -> None:
    async with serving(edge_app()) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        writer.write_eof()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        await still_serves(port)


async def test_stream_with_connection_close_and_client_leaving() -> None:
    async with serving(edge_app()) as (_, port):
        data = await exchange(
            port, b"GET /stream-close HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        assert data.endswith(b"0\r\n\r\n")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /forever HTTP/1.1\r\nHost: t\r\n\r\n")
        await reader.readexactly(100_000)
        writer.transport.abort()
        await asyncio.sleep(0.1)
        await still_serves(port)


async def test_handler_catching_cancellation_and_slow_exception_handler() -> None:
    stubborn_seen.clear()
    async with serving(edge_app()) as (_, port):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /stubborn HTTP/1.1\r\nHost: t\r\n\r\n")
        await asyncio.sleep(0.1)
        writer.transport.abort()
        for _ in range(100):
            if stubborn_seen:
                break
            await asyncio.sleep(0.01)
        assert stubborn_seen == ["cancelled"]
        data = await exchange(
            port, b"GET /slow-error HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        assert data.endswith(b"handled slowly")


async def test_handler_that_keeps_running_after_disconnect() -> None:
    app = make_app(cancel_on_disconnect=False)
    done = asyncio.Event()

    @app.get("/")
    async def index(request: Request) -> str:
        await asyncio.sleep(0.1)
        done.set()
        return "late"

    async with serving(app) as (_, port):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(GET)
        await asyncio.sleep(0.02)
        writer.transport.abort()
        await asyncio.wait_for(done.wait(), 5)


async def test_versions_in_one_read() -> None:
    async with serving(hello_app()) as (_, port):
        data = await exchange(port, GET + b"GET / HTTP/2.0\r\nHost: t\r\n\r\n")
        first, _, rest = data.partition(b"Hello, World!")
        assert status_of(first) == 200
        assert status_of(rest) == 505
        body = b"HTTP/2.0 HTTP/1.0 in a body"
        data = await exchange(
            port,
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
            + b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
        assert body in data
        assert data.endswith(b"Hello, World!")


@pytest.mark.parametrize("suspends", [False, True], ids=["at-once", "after-waiting"])
async def test_handler_raising_cancelled_error_itself_gets_500_and_the_connection_goes_on(
    suspends: bool,
) -> None:
    """Nothing cancelled the request: a CancelledError raised by the handler is a failure like
    any other (500, logged), not a reason to leave the client waiting."""
    app = make_app()

    @app.get("/")
    async def ok(request: Request) -> str:
        return "ok"

    @app.get("/gives-up")
    async def gives_up(request: Request) -> str:
        if suspends:
            await asyncio.sleep(0)
        raise asyncio.CancelledError

    async with serving(app) as (_, port):
        data = await exchange(
            port,
            b"GET /gives-up HTTP/1.1\r\nHost: t\r\n\r\n"
            b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            timeout=3,
        )
        first, _, rest = data.partition(b"HTTP/1.1 200")
        assert status_of(first) == 500, data
        assert rest.endswith(b"ok"), data
        await still_serves(port)
