"""Servers for the HTTP client tests: the standard library's ``http.server`` in a thread, and
raw asyncio servers that speak (broken) HTTP on purpose."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import http.server
import json
import threading
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from urllib.parse import parse_qs, urlsplit


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: StdServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    # -- helpers

    def _body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(parts)
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(
        self,
        status: int,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        *,
        length: bool = True,
    ) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    # -- routes

    def _route(self) -> None:
        self.server.requests += 1
        parts = urlsplit(self.path)
        path, query = parts.path, parse_qs(parts.query)
        body = self._body()
        self.server.paths.append((self.command, self.path))
        if path == "/hello":
            self._send(200, b"hello", {"Content-Type": "text/plain; charset=utf-8"})
        elif path == "/echo":
            out = {
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode("latin-1"),
            }
            self._send(200, json.dumps(out).encode(), {"Content-Type": "application/json"})
        elif path.startswith("/redirect/"):
            status = int(path.rsplit("/", 1)[1])
            target = query.get("to", ["/echo"])[0]
            self._send(status, b"moved", {"Location": target})
        elif path == "/loop":
            self._send(302, b"", {"Location": "/loop"})
        elif path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for piece in (b"one ", b"two ", b"three"):
                self.wfile.write(b"%x\r\n%b\r\n" % (len(piece), piece))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        elif path in ("/gzip", "/deflate", "/rawdeflate"):
            raw = b"compressed " * 100
            if path == "/gzip":
                data, enc = gzip.compress(raw), "gzip"
            elif path == "/deflate":
                data, enc = zlib.compress(raw), "deflate"
            else:
                obj = zlib.compressobj(wbits=-zlib.MAX_WBITS)
                data, enc = obj.compress(raw) + obj.flush(), "deflate"
            self._send(200, data, {"Content-Encoding": enc})
        elif path == "/badgzip":
            self._send(200, b"not gzip at all", {"Content-Encoding": "gzip"})
        elif path == "/slow":
            time.sleep(float(query.get("delay", ["1"])[0]))
            self._send(200, b"slow")
        elif path == "/slowbody":
            self.send_response(200)
            self.send_header("Content-Length", "8")
            self.end_headers()
            self.wfile.write(b"part")
            self.wfile.flush()
            time.sleep(float(query.get("delay", ["1"])[0]))
            self.wfile.write(b"rest")
        elif path == "/close":
            self._send(200, b"bye", {"Connection": "close"})
            self.close_connection = True
        elif path == "/drop-after":
            # Answers with keep-alive semantics, then closes the connection anyway.
            self._send(200, b"dropped")
            self.close_connection = True
        elif path == "/big":
            size = int(query.get("n", ["100000"])[0])
            self._send(200, b"x" * size)
        elif path == "/cookie/set":
            self.send_response(200)
            self.send_header("Set-Cookie", "session=abc; Path=/")
            self.send_header("Set-Cookie", "other=1; Path=/cookie; Max-Age=60")
            self.send_header("Set-Cookie", "gone=1; Max-Age=0")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path.startswith("/status/"):
            self._send(int(path.rsplit("/", 1)[1]), b"status")
        elif path == "/nocontent":
            self.send_response(204)
            self.end_headers()
        else:
            self._send(404, b"not found")

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _route


class StdServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.requests = 0
        self.paths: list[tuple[str, str]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@contextlib.contextmanager
def std_server() -> Iterator[StdServer]:
    """``http.server`` on 127.0.0.1 in a thread."""
    server = StdServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def raw_server(handler: RawHandler) -> AsyncIterator[str]:
    """An asyncio server on 127.0.0.1 running ``handler`` per connection; yields its base URL."""
    tasks: set[asyncio.Task[None]] = set()
    writers: set[asyncio.StreamWriter] = set()

    async def wrapped(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        writers.add(writer)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            tasks.discard(task)

    server = await asyncio.start_server(wrapped, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        for writer in list(writers):
            writer.transport.abort()  # handlers waiting on reads see the connection end
        if tasks:
            _, pending = await asyncio.wait(list(tasks), timeout=5)
            for task in pending:
                task.cancel()
        await server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """The head of one request (bodies are not read)."""
    return await reader.readuntil(b"\r\n\r\n")


def canned(*responses: bytes, close: bool = False) -> RawHandler:
    """A handler answering each request on a connection with the next response."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for response in responses:
            await read_request(reader)
            writer.write(response)
            await writer.drain()
        if close:
            return
        await reader.read()  # hold the connection until the client goes

    return handler


def ok(body: bytes = b"ok", extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%b\r\n%b" % (len(body), extra, body)
