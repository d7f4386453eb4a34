"""Serve an ASGI 3 application on the flowcoro HTTP protocol.

`from_asgi(asgi_app)` returns a flowcoro `App` whose catch-all route is an `ASGIBridge`: it
builds the ``http`` scope from the `Request`, feeds ``receive`` from the request body as it
arrives, and turns the ``send`` messages into a response. The application's first step runs
inside the handler (no task for an application that answers without waiting); once it suspends
it continues in a task of its own, so work it does after the last body message (Starlette
background tasks) never delays the response. A response whose first body message is also its
last is sent as one buffer with ``Content-Length``; otherwise it is streamed (chunked unless the
application declared a ``Content-Length``), one message at a time: ``send`` waits until the
previous chunk has been handed to the socket, so a slow client slows the application down.
``http.response.pathsend`` is supported (a file sent by the server, like `FileResponse`). After
the response, or once the client went away mid-stream, ``receive`` answers ``http.disconnect``;
``send`` on a closed stream raises `ClientDisconnect` (an `OSError`, as ASGI spec 2.4 asks).

WebSocket Upgrade requests run the application with a ``websocket`` scope
(`flowcoro.http.asgi._websocket`): the 101 is written when it sends ``websocket.accept``.
"""

from __future__ import annotations

import asyncio
import inspect
import types
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Generator
from typing import Any
from urllib.parse import quote

from flowcoro.core.logger import get_logger
from flowcoro.http.asgi.lifespan import Lifespan, Mode
from flowcoro.http.errors import ClientDisconnect
from flowcoro.http.request import Request
from flowcoro.http.response import Response, StreamingResponse
from flowcoro.http.routing import METHODS, WEBSOCKET
from flowcoro.http.ws._options import WSOptions

__all__ = ["ASGIBridge", "from_asgi", "is_asgi_app"]

log = get_logger("flowcoro.http.asgi")

_ASGI = {"version": "3.0", "spec_version": "2.4"}
_EXTENSIONS: dict[str, Any] = {"http.response.pathsend": {}}
_FRAMING = frozenset((b"content-length", b"transfer-encoding", b"connection"))
_END = object()


def is_asgi_app(obj: Any) -> bool:
    """True for an ASGI 3 callable: ``async def app(scope, receive, send)`` (or an object whose
    ``__call__`` is one)."""
    if inspect.isclass(obj):
        return False
    if inspect.isroutine(obj):
        call: Any = obj
    else:
        call = getattr(type(obj), "__call__", None)  # noqa: B004 - the method, not callable()
    if not inspect.iscoroutinefunction(call):
        return False
    try:
        params = [
            p
            for p in inspect.signature(obj).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return False
    return len(params) == 3


_PLAIN_PATH = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/-._~")


def _raw_path(path: str) -> bytes:
    """The path re-encoded for ``raw_path`` (the protocol hands us the decoded one)."""
    if _PLAIN_PATH.issuperset(path):
        return path.encode("ascii")
    return quote(path, safe="/:@!$&'()*+,;=-._~").encode("ascii")


def _check(value: bytes, what: str) -> bytes:
    if b"\r" in value or b"\n" in value or b"\0" in value:
        raise ValueError(f"ASGI response {what} {value!r} contains CR, LF or NUL")
    return value


class _Exchange:
    """One request/response between the protocol and the ASGI application."""

    __slots__ = (
        "body_done",
        "body_iter",
        "chunks",
        "closed",
        "done",
        "error",
        "failure",
        "finished",
        "headers",
        "length",
        "media_type",
        "over",
        "reader",
        "ready",
        "request",
        "response",
        "status",
        "writer",
    )

    def __init__(self, request: Request) -> None:
        self.request = request
        # The answer for the handler; a future only when the handler has to wait for it.
        self.response: Response | None = None
        self.failure: BaseException | None = None
        self.ready: asyncio.Future[None] | None = None
        self.done: asyncio.Future[None] | None = None  # set when the exchange is over
        self.body_iter: AsyncIterator[bytes] | None = None
        self.body_done = False
        self.over = False  # the exchange is over: receive() answers http.disconnect at once
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] | None = None
        self.media_type: str | None = None
        self.length: int | None = None
        self.chunks: deque[Any] | None = None  # streaming: chunks not yet written (at most 1)
        self.reader: asyncio.Future[None] | None = None  # the writer task waits for a chunk
        self.writer: asyncio.Future[None] | None = None  # the application waits for room
        self.finished = False  # the application sent its last body message
        self.closed = False  # streaming: the writer stopped (done or the client went away)
        self.error: BaseException | None = None

    def _over(self) -> None:
        self.over = True
        done = self.done
        if done is not None and not done.done():
            done.set_result(None)

    async def receive(self) -> dict[str, Any]:
        # After the response is complete there is nothing to read any more (as uvicorn).
        if not (self.body_done or self.finished or self.closed):
            req = self.request
            it = self.body_iter
            if it is None:
                if req.body_complete:
                    # The whole body is already here (every GET): one message.
                    self.body_done = True
                    body = await req.body()
                    return {"type": "http.request", "body": body, "more_body": False}
                it = self.body_iter = req.stream().__aiter__()
            try:
                chunk = await it.__anext__()
            except StopAsyncIteration:
                self.body_done = True
                return {"type": "http.request", "body": b"", "more_body": False}
            return {"type": "http.request", "body": chunk, "more_body": True}
        # Nothing more to read: wait for the end of the exchange, then report a disconnect.
        if not self.over:
            done = self.done
            if done is None:
                self.done = done = asyncio.get_running_loop().create_future()
            await done
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "http.response.body":
            if self.status == 0:
                raise RuntimeError("ASGI: http.response.body before http.response.start")
            if self.finished:
                raise RuntimeError("ASGI: a message after the response was complete")
            body = message.get("body", b"")
            more = message.get("more_body", False)
            if self.chunks is None:
                if not more:
                    self.finished = True
                    self._complete(body)
                    return
                self._start_stream()
            await self._push(body, more)
            return
        if kind == "http.response.start":
            if self.status:
                raise RuntimeError("ASGI: http.response.start sent twice")
            self._head(message)
            return
        if kind == "http.response.pathsend":
            if self.status == 0 or self.finished or self.chunks is not None:
                raise RuntimeError("ASGI: http.response.pathsend out of order")
            from flowcoro.http.staticfiles import FileResponse

            self.finished = True
            resp = FileResponse(
                message["path"],
                self.status,
                None,
                self.media_type,
                connection=self.request._conn,
            )
            resp.headers = self.headers
            self._answer(resp)
            self._over()
            return
        raise RuntimeError(f"ASGI: unexpected message type {kind!r} on an http scope")

    @property
    def answered(self) -> bool:
        return self.response is not None or self.failure is not None

    def _answer(self, response: Response) -> None:
        self.response = response
        ready = self.ready
        if ready is not None and not ready.done():
            ready.set_result(None)

    def refuse(self, exc: BaseException) -> None:
        """No response: the handler raises ``exc``."""
        self.failure = exc
        ready = self.ready
        if ready is not None and not ready.done():
            ready.set_result(None)

    def outcome(self) -> Response:
        if self.failure is not None:
            raise self.failure
        assert self.response is not None
        return self.response

    def _head(self, message: dict[str, Any]) -> None:
        status = message["status"]
        if not isinstance(status, int) or not 100 <= status <= 599:
            raise ValueError(f"ASGI: status {status!r} is not an HTTP status code")
        headers: list[tuple[bytes, bytes]] | None = None
        for name, value in message.get("headers", ()):
            if type(name) is not bytes:
                name = bytes(name)
            if type(value) is not bytes:
                value = bytes(value)
            name = name.lower()
            if name in _FRAMING:
                if name == b"content-length":
                    self.length = int(value)
                continue
            if name == b"content-type":
                self.media_type = _check(value, "content-type").decode("latin-1")
                continue
            pair = (_check(name, "header name"), _check(value, "header value"))
            if headers is None:
                headers = [pair]
            else:
                headers.append(pair)
        self.headers = headers
        self.status = status

    def _complete(self, body: bytes) -> None:
        if self.request.method == "HEAD" and self.length is not None:
            # HEAD: the application declared the GET body's length and sent none.
            resp: Response = StreamingResponse(
                (), self.status, None, self.media_type, content_length=self.length
            )
        else:
            resp = Response(bytes(body), self.status, None, self.media_type)
        resp.headers = self.headers
        self._answer(resp)
        self._over()

    def _start_stream(self) -> None:
        self.chunks = deque()
        resp = StreamingResponse(
            self._stream(), self.status, None, self.media_type, content_length=self.length
        )
        resp.headers = self.headers
        self._answer(resp)

    async def _push(self, body: bytes, more: bool) -> None:
        self._check_open()
        chunks = self.chunks
        assert chunks is not None
        if body:
            chunks.append(bytes(body))
        if not more:
            self.finished = True
            chunks.append(_END)
        self._wake_reader()
        # One chunk in flight at most: wait until the writer took it (or stopped).
        while chunks and not self.closed:
            waiter = self.writer = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self.writer = None
        if not self.finished:
            self._check_open()

    def _check_open(self) -> None:
        if self.closed:
            raise ClientDisconnect("the client closed the connection during a streamed response")

    def _wake_reader(self) -> None:
        waiter = self.reader
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake_writer(self) -> None:
        waiter = self.writer
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def fail(self, exc: BaseException) -> None:
        """The application raised (or returned early) after the stream started."""
        self.error = exc
        self._wake_reader()

    async def _stream(self) -> AsyncIterator[bytes]:
        chunks = self.chunks
        assert chunks is not None
        try:
            while True:
                if chunks:
                    item = chunks.popleft()
                    self._wake_writer()
                    if item is _END:
                        return
                    yield item
                    continue
                if self.error is not None:
                    raise self.error
                waiter = self.reader = asyncio.get_running_loop().create_future()
                try:
                    await waiter
                finally:
                    self.reader = None
        finally:
            self.closed = True
            chunks.clear()
            self._wake_writer()
            self._over()


class ASGIBridge:
    """The flowcoro handler that runs an ASGI application for each request."""

    __slots__ = ("app", "lifespan", "root_path", "scheme", "tasks")

    def __init__(
        self,
        app: Callable[..., Any],
        *,
        lifespan: Lifespan | None = None,
        root_path: str = "",
        scheme: str = "http",
    ) -> None:
        self.app = app
        self.lifespan = lifespan
        self.root_path = root_path
        self.scheme = scheme
        self.tasks: set[asyncio.Task[None]] = set()

    def scope(self, request: Request) -> dict[str, Any]:
        path = request.path
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": _ASGI,
            "http_version": request.http_version,
            "method": request.method,
            "scheme": self.scheme,
            "path": path,
            "raw_path": _raw_path(path),
            "query_string": request.query_string,
            "root_path": self.root_path,
            "headers": request._raw_headers,  # (lower-case name, value) pairs as received
            "client": request.client,
            "server": None,
            "extensions": _EXTENSIONS,
        }
        lifespan = self.lifespan
        if lifespan is not None:
            scope["state"] = lifespan.state.copy()
        return scope

    def websocket_scope(self, request: Request) -> dict[str, Any]:
        """The ``websocket`` scope of an Upgrade request."""
        path = request.path
        subprotocols: list[str] = []
        for name, value in request._raw_headers:
            if name == b"sec-websocket-protocol":
                subprotocols.extend(
                    p.strip() for p in value.decode("latin-1").split(",") if p.strip()
                )
        scope: dict[str, Any] = {
            "type": "websocket",
            "asgi": _ASGI,
            "http_version": request.http_version,
            "scheme": "wss" if self.scheme == "https" else "ws",
            "path": path,
            "raw_path": _raw_path(path),
            "query_string": request.query_string,
            "root_path": self.root_path,
            "headers": request._raw_headers,
            "client": request.client,
            "server": None,
            "subprotocols": subprotocols,
            "extensions": {},
        }
        lifespan = self.lifespan
        if lifespan is not None:
            scope["state"] = lifespan.state.copy()
        return scope

    async def __call__(self, request: Request, **_: Any) -> Response:
        loop = asyncio.get_running_loop()
        ex = _Exchange(request)
        coro = self._run(self.scope(request), ex)
        # The application's first step runs right here, inside the handler: a response that
        # needs no waiting (the common case) costs no task. Only an application that suspends
        # continues in a task of its own, so the response never waits for work it does after
        # its last body message (background tasks).
        try:
            pending = coro.send(None)
        except StopIteration:
            pass
        else:
            task = loop.create_task(_resume(coro, pending))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            if not ex.answered:
                ready = ex.ready = loop.create_future()
                try:
                    await ready
                except asyncio.CancelledError:
                    task.cancel()
                    raise
        return ex.outcome()

    async def _run(self, scope: dict[str, Any], ex: _Exchange) -> None:
        try:
            await self.app(scope, ex.receive, ex.send)
        except asyncio.CancelledError:
            # Shutdown cancelled the application: the handler answers 500 if it still waits.
            if not ex.answered:
                ex.refuse(RuntimeError("the ASGI application was cancelled"))
            elif ex.chunks is not None and not ex.finished:
                ex.fail(ConnectionAbortedError("the ASGI application was cancelled"))
            raise
        except Exception as exc:
            if not ex.answered:
                ex.refuse(exc)  # the handler raises it: a logged 500
            elif ex.chunks is not None and not ex.finished:
                ex.fail(exc)  # the writer raises it: logged, connection aborted
            elif not isinstance(exc, ClientDisconnect):
                log.error(
                    "asgi.app_error_after_response",
                    path=ex.request.path,
                    request_id=ex.request.id,
                    exc_info=exc,
                )
        else:
            if not ex.answered:
                ex.refuse(RuntimeError("the ASGI application returned without sending a response"))
            elif ex.chunks is not None and not ex.finished:
                ex.fail(RuntimeError("the ASGI application returned mid-response"))
        finally:
            ex._over()


@types.coroutine
def _resume(coro: Coroutine[Any, Any, None], pending: Any) -> Generator[Any, Any, None]:
    """Continue ``coro``, already started by hand and suspended on ``pending``, as the body of a
    task: what it waits on is handed up to the task, and the outcome (or a cancellation) is
    passed back down."""
    while True:
        try:
            value = yield pending
        except BaseException as exc:
            try:
                pending = coro.throw(exc)
            except StopIteration:
                return
            continue
        try:
            pending = coro.send(value)
        except StopIteration:
            return


def from_asgi(
    asgi_app: Callable[..., Any],
    *,
    name: str = "asgi",
    lifespan: Mode = "auto",
    root_path: str = "",
    websocket: WSOptions | None = None,
    **app_options: Any,
) -> Any:
    """A flowcoro `App` serving ``asgi_app`` for every path and method, and every WebSocket
    Upgrade (with the ``websocket`` options, `flowcoro.http.ws.WSOptions`; defaults when
    None); its startup and shutdown drive the ASGI lifespan. ``app_options`` go to
    `flowcoro.http.App`."""
    from flowcoro.http.app import App
    from flowcoro.http.asgi._websocket import ASGIWebSocketRoute

    app = App(name, **app_options)
    span = Lifespan(asgi_app, lifespan)
    bridge = ASGIBridge(asgi_app, lifespan=span, root_path=root_path)
    app.add_route("/", bridge, METHODS)
    app.add_route("/{path:path}", bridge, METHODS)
    ws_route = ASGIWebSocketRoute(bridge, websocket if websocket is not None else WSOptions())
    app.add_route("/", ws_route, (WEBSOCKET,))
    app.add_route("/{path:path}", ws_route, (WEBSOCKET,))
    app.on_startup(span.startup)

    @app.on_shutdown
    async def _shutdown() -> None:
        tasks = list(bridge.tasks)  # background work still running after its response
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)
        await span.shutdown()

    app.asgi_bridge = bridge  # type: ignore[attr-defined]
    return app
