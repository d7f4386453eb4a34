"""Static files on a real socket: validators, ranges, precompressed siblings, index files, and
every path-traversal attempt sent byte for byte over a raw socket (httpx would normalise it)."""

from __future__ import annotations

import asyncio
import gzip
import os
from email.utils import formatdate
from pathlib import Path
from typing import Any

import httpx
import pytest
from _http_helpers import exchange, make_app, read_response, serving, status_of

from flowcoro.http import Request, Response
from flowcoro.http.staticfiles import (
    FileResponse,
    StaticFiles,
    file_response,
    guess_type,
    parse_range,
)

BODY = bytes(range(256)) * 1000  # 256000 bytes: several chunks


def tree(tmp: Path) -> Path:
    root = tmp / "site"
    (root / "docs").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "index.html").write_text("<h1>home</h1>")
    (root / "docs" / "index.html").write_text("<h1>docs</h1>")
    (root / "big.bin").write_bytes(BODY)
    (root / "app.js").write_text("console.log(1)")
    (root / "app.js.gz").write_bytes(gzip.compress(b"console.log(1)"))
    (root / "style.css").write_text("body{}")
    (root / "style.css.br").write_bytes(b"fake-brotli")
    (root / ".env").write_text("SECRET=1")
    (tmp / "secret.txt").write_text("outside")
    os.symlink(tmp / "secret.txt", root / "link-out.txt")
    os.symlink(root / "style.css", root / "link-in.css")
    return root


def static_app(root: Path, **options: Any) -> Any:
    app = make_app()
    app.static("/assets", root, chunk_size=65536, **options)

    @app.get("/one")
    async def one(request: Request) -> Response:
        return file_response(request, root / "app.js", precompressed=False)

    return app


async def raw_get(port: int, target: bytes) -> bytes:
    return await exchange(
        port, b"GET " + target + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )


async def test_serving_validators_and_ranges(tmp_path: Path) -> None:
    root = tree(tmp_path)
    async with (
        serving(static_app(root)) as (_, port),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as c,
    ):
        r = await c.get("/assets/big.bin")
        assert r.status_code == 200
        assert r.content == BODY
        assert r.headers["content-length"] == str(len(BODY))
        assert r.headers["content-type"] == "application/octet-stream"
        assert r.headers["accept-ranges"] == "bytes"
        etag, lm = r.headers["etag"], r.headers["last-modified"]
        r = await c.head("/assets/big.bin")
        assert r.content == b""
        assert r.headers["content-length"] == str(len(BODY))
        # conditional requests
        r = await c.get("/assets/big.bin", headers={"if-none-match": etag})
        assert r.status_code == 304
        assert r.content == b""
        assert r.headers["etag"] == etag
        r = await c.get("/assets/big.bin", headers={"if-none-match": f'"x", W/{etag}'})
        assert r.status_code == 304
        r = await c.get("/assets/big.bin", headers={"if-none-match": "*"})
        assert r.status_code == 304
        r = await c.get("/assets/big.bin", headers={"if-none-match": '"other"'})
        assert r.status_code == 200
        r = await c.get("/assets/big.bin", headers={"if-modified-since": lm})
        assert r.status_code == 304
        old = formatdate(0, usegmt=True)
        r = await c.get("/assets/big.bin", headers={"if-modified-since": old})
        assert r.status_code == 200
        r = await c.get("/assets/big.bin", headers={"if-modified-since": "garbage"})
        assert r.status_code == 200
        # ranges
        r = await c.get("/assets/big.bin", headers={"range": "bytes=10-19"})
        assert r.status_code == 206
        assert r.content == BODY[10:20]
        assert r.headers["content-range"] == f"bytes 10-19/{len(BODY)}"
        r = await c.get("/assets/big.bin", headers={"range": "bytes=-5"})
        assert r.content == BODY[-5:]
        r = await c.get("/assets/big.bin", headers={"range": "bytes=255990-"})
        assert r.content == BODY[255990:]
        r = await c.get("/assets/big.bin", headers={"range": "bytes=100-99999999"})
        assert r.status_code == 206
        assert r.content == BODY[100:]
        r = await c.get("/assets/big.bin", headers={"range": "bytes=999999-"})
        assert r.status_code == 416
        assert r.headers["content-range"] == f"bytes */{len(BODY)}"
        r = await c.get("/assets/big.bin", headers={"range": "bytes=0-1,5-6"})
        assert r.status_code == 200
        assert len(r.content) == len(BODY)
        r = await c.get("/assets/big.bin", headers={"range": "bytes=0-1", "if-range": etag})
        assert r.status_code == 206
        r = await c.get("/assets/big.bin", headers={"range": "bytes=0-1", "if-range": lm})
        assert r.status_code == 206
        r = await c.get("/assets/big.bin", headers={"range": "bytes=0-1", "if-range": '"old"'})
        assert r.status_code == 200
        # content types, precompressed siblings and Vary
        r = await c.get("/assets/app.js", headers={"accept-encoding": "gzip"})
        assert r.text == "console.log(1)"  # httpx decodes the gzip sibling
        assert r.headers["content-encoding"] == "gzip"
        assert r.headers["vary"] == "accept-encoding"
        assert "javascript" in r.headers["content-type"]
        r = await c.get("/assets/app.js", headers={"accept-encoding": "identity"})
        assert "content-encoding" not in r.headers
        assert r.headers["vary"] == "accept-encoding"
        r = await c.get("/assets/app.js", headers={"accept-encoding": "gzip;q=0, br;q=x"})
        assert "content-encoding" not in r.headers
        r = await c.get("/assets/style.css", headers={"accept-encoding": "br, gzip"})
        assert r.headers["content-encoding"] == "br"
        assert r.content == b"fake-brotli"
        assert r.headers["content-type"] == "text/css; charset=utf-8"
        r = await c.get("/one", headers={"accept-encoding": "gzip"})
        assert r.text == "console.log(1)"
        assert "content-encoding" not in r.headers
        # index files and redirects, symlinks inside the root
        r = await c.get("/assets/")
        assert r.text == "<h1>home</h1>"
        r = await c.get("/assets")
        assert r.status_code == 308
        assert r.headers["location"] == "/assets/"
        r = await c.get("/assets/docs?x=1")
        assert r.status_code == 308
        assert r.headers["location"] == "/assets/docs/?x=1"
        r = await c.get("/assets/docs/")
        assert r.text == "<h1>docs</h1>"
        r = await c.get("/assets/empty/")
        assert r.status_code == 404  # no listing
        r = await c.get("/assets/link-in.css")
        assert r.text == "body{}"
        r = await c.get("/assets/missing.txt")
        assert r.status_code == 404
        r = await c.get("/assets/big.bin/x")
        assert r.status_code == 404
        r = await c.post("/assets/big.bin")
        assert r.status_code == 405


@pytest.mark.parametrize(
    "target",
    [
        b"/assets/../secret.txt",
        b"/assets/%2e%2e/secret.txt",
        b"/assets/%2E%2E/secret.txt",
        b"/assets/.%2e/secret.txt",
        b"/assets/docs/../../secret.txt",
        b"/assets/..%2fsecret.txt",
        b"/assets/%2e%2e%2fsecret.txt",
        b"/assets//etc/passwd",
        b"/assets/%2fetc%2fpasswd",
        b"/assets/..%5csecret.txt",
        b"/assets/link-out.txt",
        b"/assets/.env",
        b"/assets/%2eenv",
        b"/assets/./index.html",
    ],
)
async def test_traversal_is_refused(tmp_path: Path, target: bytes) -> None:
    root = tree(tmp_path)
    async with serving(static_app(root)) as (_, port):
        data = await raw_get(port, target)
        assert status_of(data) in (400, 404), data[:200]
        assert b"outside" not in data
        assert b"root:" not in data
        assert b"SECRET" not in data


async def test_nul_and_options(tmp_path: Path) -> None:
    root = tree(tmp_path)
    async with serving(static_app(root)) as (_, port):
        data = await raw_get(port, b"/assets/index.html%00.txt")
        assert status_of(data) == 400
    app = static_app(root, allow_outside_symlinks=True, dotfiles=True, index=None)
    async with serving(app) as (_, port):
        assert b"outside" in await raw_get(port, b"/assets/link-out.txt")
        assert b"SECRET" in await raw_get(port, b"/assets/.env")
        assert status_of(await raw_get(port, b"/assets/")) == 404
        assert status_of(await raw_get(port, b"/assets/../secret.txt")) == 404
    app = make_app()
    app.static("/", root, index=["missing.html", "index.html"], precompressed=False)
    async with serving(app) as (_, port):
        data = await raw_get(port, b"/")
        assert data.endswith(b"<h1>home</h1>")
        data = await raw_get(port, b"/app.js")
        assert b"content-encoding" not in data


async def test_keepalive_and_slow_reader(tmp_path: Path) -> None:
    root = tree(tmp_path)
    async with serving(static_app(root)) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(3):
            writer.write(b"GET /assets/big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
            status, _headers, body = await read_response(reader)
            assert status == 200
            assert body == BODY
        writer.write(b"GET /assets/big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        await reader.readexactly(100)
        writer.close()  # the client goes away mid-file: the server just stops
        await writer.wait_closed()
        assert status_of(await raw_get(port, b"/assets/index.html")) == 200


async def test_file_shrinking_while_sent(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"a" * 10)
    resp = FileResponse(path, count=20, chunk_size=4)
    chunks: list[bytes] = []

    async def drain() -> None:
        async for chunk in resp._chunks():
            chunks.append(chunk)

    with pytest.raises(OSError, match="shrank"):
        await drain()
    assert b"".join(chunks) == b"a" * 10


def test_units(tmp_path: Path) -> None:
    assert parse_range("bytes=0-9", 100) == (0, 9)
    assert parse_range("bytes=-0", 100) is False
    assert parse_range("bytes=-200", 100) == (0, 99)
    assert parse_range("bytes=100-", 100) is False
    for bad in ("items=0-1", "bytes=5", "bytes=9-2", "bytes=a-b", "bytes=--1", "bytes=1-x"):
        assert parse_range(bad, 100) is None, bad
    assert guess_type("x.unknownext") == "application/octet-stream"
    assert guess_type("x.svg") == "image/svg+xml; charset=utf-8"
    assert guess_type("x.png") == "image/png"
    with pytest.raises(ValueError, match="directory"):
        StaticFiles(tmp_path / "nope")
    with pytest.raises(ValueError, match="chunk_size"):
        StaticFiles(tmp_path, chunk_size=0)
    (tmp_path / "f").write_bytes(b"x")
    with pytest.raises(ValueError, match="chunk_size"):
        FileResponse(tmp_path / "f", chunk_size=0)
    with pytest.raises(ValueError, match="negative"):
        FileResponse(tmp_path / "f", offset=5)
    assert FileResponse(tmp_path / "f").count == 1
    req = Request("GET", "/")
    from flowcoro.http import HTTPException

    with pytest.raises(HTTPException):
        file_response(req, tmp_path / "missing")
    with pytest.raises(HTTPException):
        file_response(req, tmp_path)  # a directory
    files = StaticFiles(tmp_path, index=("a", "b"))
    assert files.index == ("a", "b")


async def test_zero_copy_and_slow_reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flowcoro.http import staticfiles

    calls = {"sendfile": 0, "blocked": 0}
    real = staticfiles._sendfile
    assert real is not None

    def counting(out: int, fd: int, pos: int, count: int) -> int:
        calls["sendfile"] += 1
        try:
            return real(out, fd, pos, count)
        except BlockingIOError:
            calls["blocked"] += 1
            raise

    monkeypatch.setattr(staticfiles, "_sendfile", counting)
    big = bytes(range(251)) * 40000  # ~10 MB: more than the socket buffers hold
    root = tmp_path / "r"
    root.mkdir()
    (root / "big.bin").write_bytes(big)
    app = make_app()
    app.static("/", root)
    async with serving(app) as (_, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(0.2)  # the socket fills up: sendfile would block
        received = await reader.readexactly(len(big))
        assert received == big
        writer.write(b"GET /big.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=5-9\r\n\r\n")
        status, _, body = await read_response(reader)
        assert status == 206
        assert body == big[5:10]
        writer.close()
        await writer.wait_closed()
    assert calls["sendfile"] >= 2
    assert calls["blocked"] >= 1


async def test_tls_uses_chunked_reads(tmp_path: Path) -> None:
    import ssl

    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    root = tree(tmp_path)
    app = static_app(root)
    server = await app.serve("127.0.0.1", 0, ssl=server_ctx)
    try:
        async with httpx.AsyncClient(verify=client_ctx) as c:
            r = await c.get(f"https://127.0.0.1:{server.port}/assets/big.bin")
            assert r.content == BODY
    finally:
        await server.shutdown(2.0)
        await app.stop()
