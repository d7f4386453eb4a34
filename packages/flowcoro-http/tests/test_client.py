"""The HTTP client against the standard library's ``http.server`` on loopback."""

from __future__ import annotations

import asyncio
import json

import pytest
from _client_helpers import std_server

from flowcoro.core import deadline
from flowcoro.http.client import (
    Client,
    ClientClosed,
    HTTPStatusError,
    InvalidURL,
    Limits,
    ProtocolError,
    ReadTimeout,
    ResponseNotRead,
    ResponseTooLarge,
    StreamConsumed,
    Timeout,
    TimeoutException,
    TooManyRedirects,
)


async def test_methods_params_headers_and_bodies() -> None:
    with std_server() as server:
        async with Client(headers={"X-Default": "d"}) as client:
            r = await client.get(f"{server.url}/hello")
            assert (r.status_code, r.content, r.text) == (200, b"hello", "hello")
            assert r.reason_phrase == "OK"
            assert r.http_version == "HTTP/1.1"
            assert r.headers["content-type"] == "text/plain; charset=utf-8"
            assert r.is_success
            assert not r.is_error
            assert not r.is_redirect
            assert r.encoding == "utf-8"
            assert "GET" in repr(r)

            r = await client.get(
                f"{server.url}/echo?a=1", params={"b": [2, 3], "c": None, "t": True}
            )
            echo = r.json()
            assert echo["path"] == "/echo?a=1&b=2&b=3&c=&t=true"
            assert echo["headers"]["x-default"] == "d"
            assert echo["headers"]["user-agent"].startswith("flowcoro-http/")
            assert echo["headers"]["host"] == server.url.removeprefix("http://")

            r = await client.post(f"{server.url}/echo", json={"k": [1, 2]})
            echo = r.json()
            assert (echo["method"], json.loads(echo["body"])) == ("POST", {"k": [1, 2]})
            assert echo["headers"]["content-type"] == "application/json"

            r = await client.put(f"{server.url}/echo", data={"a": "1", "b": ["x", "y"]})
            echo = r.json()
            assert echo["body"] == "a=1&b=x&b=y"
            assert echo["headers"]["content-type"] == "application/x-www-form-urlencoded"

            r = await client.patch(
                f"{server.url}/echo", content="héllo", headers=[("X-Custom", "1")]
            )
            echo = r.json()
            assert echo["body"] == "héllo".encode().decode("latin-1")
            assert echo["headers"]["content-type"] == "text/plain; charset=utf-8"
            assert echo["headers"]["x-custom"] == "1"

            r = await client.post(f"{server.url}/echo", content=bytearray(b"raw"))
            assert r.json()["body"] == "raw"
            assert r.json()["headers"]["content-length"] == "3"
            r = await client.post(f"{server.url}/echo")
            assert r.json()["headers"]["content-length"] == "0"

            r = await client.delete(f"{server.url}/echo")
            assert r.json()["method"] == "DELETE"
            r = await client.options(f"{server.url}/echo")
            assert r.json()["method"] == "OPTIONS"
            r = await client.request("get", f"{server.url}/echo")
            assert r.json()["method"] == "GET"

            r = await client.head(f"{server.url}/big?n=5000")
            assert (r.status_code, r.content, r.headers["content-length"]) == (200, b"", "5000")
            # The HEAD response left the connection usable: the next request on it works.
            r = await client.get(f"{server.url}/hello")
            assert r.content == b"hello"
            r = await client.get(f"{server.url}/nocontent")
            assert (r.status_code, r.content) == (204, b"")

            stats = next(iter(client.pool_statistics().values()))
            assert stats.created == 1
            assert stats.in_use == 0


async def test_streamed_request_bodies_use_chunked_encoding() -> None:
    async def agen():
        for part in (b"a", b"", bytearray(b"b"), "c"):
            yield part

    with std_server() as server:
        async with Client() as client:
            r = await client.post(f"{server.url}/echo", content=agen())
            echo = r.json()
            assert echo["body"] == "abc"
            assert echo["headers"]["transfer-encoding"] == "chunked"
            r = await client.post(f"{server.url}/echo", content=iter([b"x", b"y"]))
            assert r.json()["body"] == "xy"
            # With a Content-Length given, the stream is sent as is.
            r = await client.post(
                f"{server.url}/echo", content=[b"12", b"34"], headers={"Content-Length": "4"}
            )
            echo = r.json()
            assert (echo["body"], echo["headers"].get("transfer-encoding")) == ("1234", None)
            big = b"z" * 300_000
            r = await client.put(f"{server.url}/echo", content=big)
            assert len(r.json()["body"]) == 300_000

            async def bad():
                yield 42

            with pytest.raises(TypeError, match="chunks must be bytes"):
                await client.post(f"{server.url}/echo", content=bad())


async def test_streaming_response() -> None:
    with std_server() as server:
        async with Client() as client:
            async with client.stream("GET", f"{server.url}/chunked") as r:
                assert r.status_code == 200
                with pytest.raises(ResponseNotRead):
                    _ = r.content
                chunks = [c async for c in r.aiter_bytes()]
                assert b"".join(chunks) == b"one two three"
                with pytest.raises(StreamConsumed):
                    async for _ in r.aiter_bytes():
                        pass
            assert r.is_closed
            async with client.stream("GET", f"{server.url}/gzip") as r:
                assert await r.read() == b"compressed " * 100
                assert await r.read() == b"compressed " * 100  # cached
                assert r.content == b"compressed " * 100
            async with client.stream("GET", f"{server.url}/big?n=1000000") as r:
                total = 0
                async for chunk in r.aiter_raw():
                    total += len(chunk)
                assert total == 1_000_000
            # Leaving early closes the connection instead of reusing it.
            async with client.stream("GET", f"{server.url}/big?n=1000000") as r:
                async for _ in r.aiter_bytes():
                    break
            stats = next(iter(client.pool_statistics().values()))
            assert stats.in_use == 0
            assert stats.discarded >= 1
            async with client.stream("POST", f"{server.url}/echo", json={"a": 1}) as r:
                assert json.loads(await r.read())["body"] == '{"a":1}'
            # The in-memory body of a non-streamed response can be iterated too.
            r = await client.get(f"{server.url}/hello")
            assert [c async for c in r.aiter_bytes()] == [b"hello"]


async def test_decoding_gzip_deflate_and_limits() -> None:
    with std_server() as server:
        async with Client() as client:
            for path in ("/gzip", "/deflate", "/rawdeflate"):
                r = await client.get(f"{server.url}{path}")
                assert r.content == b"compressed " * 100, path
            with pytest.raises(ProtocolError, match="cannot decode"):
                await client.get(f"{server.url}/badgzip")
            async with client.stream("GET", f"{server.url}/badgzip") as r:
                with pytest.raises(ProtocolError, match="cannot decode"):
                    await r.read()
        async with Client(decompress=False) as client:
            r = await client.get(f"{server.url}/gzip")
            assert r.content[:2] == b"\x1f\x8b"
        async with Client(limits=Limits(max_body_size=500)) as client:
            with pytest.raises(ResponseTooLarge, match="max_body_size=500") as info:
                await client.get(f"{server.url}/big?n=501")
            assert info.value.limit == 500
            assert info.value.url.endswith("/big?n=501")
            # Decompressed size counts too (a zip bomb is not inflated past the limit).
            with pytest.raises(ResponseTooLarge):
                await client.get(f"{server.url}/gzip")
            async with client.stream("GET", f"{server.url}/big?n=5000") as r:
                with pytest.raises(ResponseTooLarge):
                    await r.read()
            # Streaming is not limited.
            async with client.stream("GET", f"{server.url}/big?n=5000") as r:
                assert sum([len(c) async for c in r.aiter_bytes()]) == 5000
            r = await client.get(f"{server.url}/big?n=500")
            assert len(r.content) == 500
            assert all(s.in_use == 0 for s in client.pool_statistics().values())


async def test_redirects() -> None:
    with std_server() as server:
        async with Client() as client:
            for status in (301, 302, 303):
                r = await client.post(f"{server.url}/redirect/{status}", content=b"body")
                echo = r.json()
                assert (echo["method"], echo["body"]) == ("GET", ""), status
                assert "content-type" not in echo["headers"]
                assert [h.status_code for h in r.history] == [status]
                assert r.url == f"{server.url}/echo"
            r = await client.post(
                f"{server.url}/redirect/303",
                content=b"body",
                headers={"Content-Type": "text/plain", "X-Keep": "1"},
            )
            assert "content-type" not in r.json()["headers"]
            assert r.json()["headers"]["x-keep"] == "1"
            for status in (307, 308):
                r = await client.post(f"{server.url}/redirect/{status}", json={"x": 1})
                echo = r.json()
                assert (echo["method"], echo["body"]) == ("POST", '{"x":1}'), status
            # 301/302 keep a PUT; 303 turns everything but HEAD into GET.
            r = await client.put(f"{server.url}/redirect/302", content=b"p")
            assert r.json()["method"] == "PUT"
            r = await client.head(f"{server.url}/redirect/303")
            assert (r.status_code, r.history[0].status_code) == (200, 303)
            # A one-shot streamed body cannot be replayed: the 307 is handed back.

            async def body():
                yield b"once"

            r = await client.post(f"{server.url}/redirect/307", content=body())
            assert r.status_code == 307
            assert r.is_redirect
            r = await client.get(f"{server.url}/redirect/302", follow_redirects=False)
            assert (r.status_code, r.headers["location"]) == (302, "/echo")
            with pytest.raises(TooManyRedirects, match="max_redirects=10") as info:
                await client.get(f"{server.url}/loop")
            assert info.value.method == "GET"
            assert "/loop" in str(info.value)
            # Streamed responses follow redirects too.
            async with client.stream("GET", f"{server.url}/redirect/301") as r:
                assert json.loads(await r.read())["method"] == "GET"
                assert len(r.history) == 1
            with pytest.raises(ProtocolError, match="unusable Location"):
                await client.get(f"{server.url}/redirect/302?to=ftp://example.invalid/")
            assert all(s.in_use == 0 for s in client.pool_statistics().values())
        async with Client(max_redirects=0) as client:
            with pytest.raises(TooManyRedirects):
                await client.get(f"{server.url}/redirect/302")
        async with Client(follow_redirects=False) as client:
            r = await client.get(f"{server.url}/redirect/302")
            assert r.status_code == 302
            r = await client.get(f"{server.url}/redirect/302", follow_redirects=True)
            assert r.status_code == 200


async def test_authorization_dropped_on_cross_origin_redirect() -> None:
    with std_server() as first, std_server() as second:
        async with Client() as client:
            auth = {"Authorization": "Bearer secret", "X-Keep": "1"}
            r = await client.get(f"{first.url}/redirect/302?to=/echo", headers=auth)
            assert r.json()["headers"]["authorization"] == "Bearer secret"
            r = await client.get(f"{first.url}/redirect/302?to={second.url}/echo", headers=auth)
            headers = r.json()["headers"]
            assert "authorization" not in headers
            assert headers["x-keep"] == "1"
            assert r.url == f"{second.url}/echo"


async def test_keep_alive_reuse_and_connection_close() -> None:
    with std_server() as server:
        async with Client() as client:
            for _ in range(5):
                assert (await client.get(f"{server.url}/hello")).status_code == 200
            stats = next(iter(client.pool_statistics().values()))
            assert (stats.created, stats.reuses) == (1, 4)
            r = await client.get(f"{server.url}/close")
            assert r.content == b"bye"
            r = await client.get(f"{server.url}/hello")
            stats = next(iter(client.pool_statistics().values()))
            assert stats.created == 2  # the closed connection was not reused


async def test_idle_connections_expire_and_pools_are_registered() -> None:
    from flowcoro.core import Pool

    with std_server() as server:
        async with Client(limits=Limits(keepalive_expiry=0.1)) as client:
            await client.get(f"{server.url}/hello")
            stats = next(iter(client.pool_statistics().values()))
            assert stats.idle == 1
            assert any(p.name == f"http-client {server.url}" for p in Pool.instances())
            await asyncio.sleep(0.4)
            stats = next(iter(client.pool_statistics().values()))
            assert (stats.idle, stats.size, stats.closed) == (0, 0, 1)
            assert (await client.get(f"{server.url}/hello")).content == b"hello"


async def test_server_closing_kept_alive_connection_is_retried_once() -> None:
    with std_server() as server:
        async with Client() as client:
            for _ in range(3):
                # The server drops the connection after each answer without saying so.
                r = await client.get(f"{server.url}/drop-after")
                assert r.content == b"dropped"
                await asyncio.sleep(0.05)
            # Whether the close is seen before reuse (health check) or only when the request
            # fails (retry), no error reaches the caller.
            for _ in range(5):
                r = await client.get(f"{server.url}/drop-after")
                assert r.content == b"dropped"
            stats = next(iter(client.pool_statistics().values()))
            assert stats.in_use == 0


async def test_status_errors_and_raise_for_status() -> None:
    with std_server() as server:
        async with Client() as client:
            r = await client.get(f"{server.url}/status/404")
            assert r.is_error
            with pytest.raises(HTTPStatusError, match="client error 404 Not Found") as info:
                r.raise_for_status()
            assert info.value.response is r
            r = await client.get(f"{server.url}/status/503")
            with pytest.raises(HTTPStatusError, match="server error 503"):
                r.raise_for_status()
            r = await client.get(f"{server.url}/hello")
            assert r.raise_for_status() is r


async def test_timeouts_and_deadline() -> None:
    with std_server() as server:
        async with Client(timeout=Timeout(read=0.2)) as client:
            with pytest.raises(ReadTimeout, match=r"read timeout of 0\.2s") as info:
                await client.get(f"{server.url}/slow?delay=1")
            assert isinstance(info.value, TimeoutError)
            assert info.value.url.endswith("/slow?delay=1")
            # Bytes arriving in time keep the read going; a pause longer than read fails.
            r = await client.get(f"{server.url}/slowbody?delay=0.05")
            assert r.content == b"partrest"
            with pytest.raises(ReadTimeout):
                await client.get(f"{server.url}/slowbody?delay=1")
            r = await client.get(f"{server.url}/slow?delay=0.3", timeout=2.0)
            assert r.content == b"slow"
            async with client.stream("GET", f"{server.url}/slowbody?delay=1") as r:
                with pytest.raises(ReadTimeout):
                    await r.read()
        async with Client(timeout=None) as client:
            with deadline(0.2), pytest.raises(TimeoutException, match="deadline"):
                await client.get(f"{server.url}/slow?delay=1")
            with deadline(5):
                r = await client.get(f"{server.url}/hello")
                assert r.content == b"hello"
            # An expired deadline stops the request before it waits for anything.
            before = server.requests
            with deadline(0.01):
                await asyncio.sleep(0.02)
                with pytest.raises(TimeoutException, match="before the request was sent"):
                    await client.get(f"{server.url}/hello")
            assert server.requests == before
            assert all(s.in_use == 0 for s in client.pool_statistics().values())


async def test_async_with_deadline_cancels_and_pool_stays_consistent() -> None:
    with std_server() as server:
        async with Client() as client:
            await client.get(f"{server.url}/hello")
            with pytest.raises(TimeoutError):
                async with deadline(0.2):
                    await client.get(f"{server.url}/slow?delay=1")
            stats = next(iter(client.pool_statistics().values()))
            assert stats.in_use == 0
            assert stats.discarded == 1
            assert stats.size == 0  # the cancelled connection was closed, not kept
            r = await client.get(f"{server.url}/hello")
            assert r.content == b"hello"


async def test_cancellation_mid_response_never_returns_the_connection() -> None:
    with std_server() as server:
        async with Client() as client:
            task = asyncio.create_task(client.get(f"{server.url}/slowbody?delay=1"))
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            stats = next(iter(client.pool_statistics().values()))
            assert (stats.in_use, stats.idle, stats.discarded) == (0, 0, 1)

            async def stream_and_cancel() -> None:
                async with client.stream("GET", f"{server.url}/slowbody?delay=1") as r:
                    await r.read()

            task = asyncio.create_task(stream_and_cancel())
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            stats = next(iter(client.pool_statistics().values()))
            assert (stats.in_use, stats.idle, stats.discarded) == (0, 0, 2)
            assert (await client.get(f"{server.url}/hello")).content == b"hello"


async def test_pool_limit_and_pool_timeout() -> None:
    from flowcoro.http.client import PoolTimeout

    with std_server() as server:
        limits = Limits(max_connections_per_host=2)
        async with Client(limits=limits, timeout=Timeout(pool=0.2)) as client:
            results = await asyncio.gather(
                *(client.get(f"{server.url}/slow?delay=0.1") for _ in range(4))
            )
            assert [r.content for r in results] == [b"slow"] * 4
            stats = next(iter(client.pool_statistics().values()))
            assert stats.created == 2
            async with (
                client.stream("GET", f"{server.url}/hello") as r1,
                client.stream("GET", f"{server.url}/hello") as r2,
            ):
                with pytest.raises(PoolTimeout, match="max_connections_per_host=2"):
                    await client.get(f"{server.url}/hello")
                await r1.read()
                await r2.read()
            assert (await client.get(f"{server.url}/hello")).content == b"hello"


async def test_cookies_and_base_url() -> None:
    with std_server() as server:
        async with Client(base_url=f"{server.url}/", cookies=True) as client:
            assert client.cookies is not None
            await client.get("cookie/set")
            assert client.cookies.get("session") == "abc"
            assert client.cookies.get("gone") is None
            echo = (await client.get("echo")).json()
            assert echo["headers"]["cookie"] == "session=abc"
            echo = (await client.get("/cookie/x", follow_redirects=False)).status_code
            r = await client.get("redirect/302?to=/echo")
            assert r.json()["headers"]["cookie"] == "session=abc"
        async with Client() as client:
            assert client.cookies is None
            await client.get(f"{server.url}/cookie/set")
            echo = (await client.get(f"{server.url}/echo")).json()
            assert "cookie" not in echo["headers"]


async def test_closed_client_and_bad_input() -> None:
    with std_server() as server:
        client = Client()
        async with client:
            with pytest.raises(InvalidURL, match="scheme"):
                await client.get("ftp://x/")
            with pytest.raises(InvalidURL, match="no host"):
                await client.get("http:///path")
            with pytest.raises(InvalidURL, match="CR, LF, NUL"):
                await client.get(f"{server.url}/a\r\nX: y")
            with pytest.raises(InvalidURL, match="Port out of range"):
                await client.get("http://127.0.0.1:99999/")
            with pytest.raises(InvalidURL, match="credentials"):
                await client.get("http://u:p@127.0.0.1/")
            with pytest.raises(InvalidURL, match="must be a str"):
                await client.get(b"http://x/")  # type: ignore[arg-type]
            with pytest.raises(ValueError, match="CR, LF or NUL"):
                await client.get(f"{server.url}/hello", headers={"X": "a\r\nb"})
            with pytest.raises(ValueError, match="header name"):
                await client.get(f"{server.url}/hello", headers={"X Y": "a"})
            with pytest.raises(TypeError, match="must be str"):
                await client.get(f"{server.url}/hello", headers={"X": 1})  # type: ignore[dict-item]
            with pytest.raises(ValueError, match="latin-1"):
                await client.get(f"{server.url}/hello", headers={"X": "\u2603"})
            with pytest.raises(ValueError, match="HTTP token"):
                await client.request("GE T", f"{server.url}/hello")
            with pytest.raises(TypeError, match="at most one"):
                await client.post(f"{server.url}/echo", json=1, content=b"x")
            with pytest.raises(TypeError, match="'data' must be a mapping"):
                await client.post(f"{server.url}/echo", data=[("a", "b")])  # type: ignore[arg-type]
            with pytest.raises(TypeError, match="'content' must be"):
                await client.post(f"{server.url}/echo", content=42)  # type: ignore[arg-type]
            assert (await client.get(f"{server.url}/hello")).content == b"hello"
        assert client.is_closed
        with pytest.raises(ClientClosed):
            await client.get(f"{server.url}/hello")
        with pytest.raises(ClientClosed):
            async with client:
                pass
