"""`Request`: what a handler receives. Everything beyond the request line is parsed lazily.

The body arrives while the handler runs: `stream()` yields it chunk by chunk as the socket
delivers it (reading from the socket pauses while too much is buffered), `body()` collects it
(bounded by the body limit), `json()` and `form()` parse it. ``Expect: 100-continue`` is
answered only when the handler first reads the body.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections import deque
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl

from flowcoro.http import _json
from flowcoro.http.cookies import parse_cookies
from flowcoro.http.datastructures import QueryParams, State
from flowcoro.http.errors import BodyTooLarge, HTTPException
from flowcoro.http.headers import Headers

if TYPE_CHECKING:
    from flowcoro.http.forms import FormData

__all__ = ["Request"]

_ids = itertools.count(1)
_PID = f"{os.getpid():x}"


class _Connection(Protocol):
    """What a request needs from the connection that carries it."""

    def body_read_started(self, request: Request) -> None: ...

    def body_consumed(self, request: Request) -> None: ...


class Request:
    """One HTTP request. ``route`` is the matched template (``/users/{id:int}``) or None."""

    # No __slots__: most attributes keep their class-level default for the whole request, so
    # creating a request stores only the handful that differ (it happens once per request).
    route: str | None = None
    path_params: dict[str, Any] | None = None
    #: The exception that escaped the handler (or a middleware) and was turned into the
    #: response, by an exception handler or as the 500; None while none did. For observers
    #: and tracers, which see the response, not the exception.
    exception: BaseException | None = None
    #: The raw W3C ``traceparent`` header (the last one, if several), kept aside by the parser
    #: so that a tracer's per-request check costs no header scan; None without one.
    traceparent: bytes | None = None
    # Defaults the server relies on: it builds requests without __init__ (see
    # HTTPProtocol.on_headers_complete) and stores only what differs.
    query_string = b""
    http_version = "1.1"
    client: tuple[str, int] | None = None
    app: Any = None
    _complete = False
    _body: bytes | None = None
    keep_alive = True
    expect_continue = False
    _headers: Headers | None = None
    _query: QueryParams | None = None
    _cookies: dict[str, str] | None = None
    _state: State | None = None
    _id: str | None = None
    _chunks: deque[bytes] | None = None
    _buffered = 0
    _received = 0
    _waiter: asyncio.Future[None] | None = None
    _error: BaseException | None = None
    _streamed = False
    _limit: int | None = None
    _form: FormData | None = None
    _endpoint: Any = None
    _kw: dict[str, Any] | None = None
    _allow: str | None = None
    _started = 0.0

    def __init__(
        self,
        method: str,
        path: str,
        query_string: bytes = b"",
        headers: list[tuple[bytes, bytes]] | None = None,
        http_version: str = "1.1",
        client: tuple[str, int] | None = None,
        app: Any = None,
        conn: _Connection | None = None,
        body: bytes | None = None,
    ) -> None:
        self.method = method
        self.path = path
        self.query_string = query_string
        self.http_version = http_version
        self.client = client
        self.app = app
        self._raw_headers = headers if headers is not None else []
        for name, value in self._raw_headers:
            if name == b"traceparent":
                self.traceparent = value
        self._conn = conn
        self._complete = body is not None or conn is None
        self._body = body

    # -- lazily parsed parts --------------------------------------------------------------

    @property
    def headers(self) -> Headers:
        h = self._headers
        if h is None:
            h = self._headers = Headers(self._raw_headers)
        return h

    @property
    def query(self) -> QueryParams:
        q = self._query
        if q is None:
            text = self.query_string.decode("latin-1")
            q = self._query = QueryParams(
                parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="replace")
            )
        return q

    @property
    def cookies(self) -> dict[str, str]:
        c = self._cookies
        if c is None:
            header = self.headers.getlist("cookie")
            c = self._cookies = parse_cookies("; ".join(header)) if header else {}
        return c

    @property
    def state(self) -> State:
        s = self._state
        if s is None:
            s = self._state = State()
        return s

    @property
    def id(self) -> str:
        """The request id: the client's ``X-Request-ID`` when it is short and printable, else a
        process-unique id. Logged with every error this request causes."""
        rid = self._id
        if rid is None:
            given = self.headers.get("x-request-id")
            if given and len(given) <= 128 and given.isprintable():
                rid = given
            else:
                rid = f"{_PID}-{next(_ids):x}"
            self._id = rid
        return rid

    @property
    def content_type(self) -> str:
        return (self.headers.get("content-type") or "").partition(";")[0].strip().lower()

    # -- the body -------------------------------------------------------------------------

    def _feed(self, chunk: bytes) -> bool:
        """Protocol side: a body chunk arrived. Returns False once the limit is exceeded."""
        self._received += len(chunk)
        limit = self._limit
        if limit is not None and self._received > limit:
            self._fail(BodyTooLarge(limit))
            return False
        if self._error is not None:
            return True  # nobody will read it (the handler finished): drop it
        chunks = self._chunks
        if chunks is None:
            chunks = self._chunks = deque()
        chunks.append(chunk)
        self._buffered += len(chunk)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return True

    def _finish(self) -> None:
        self._complete = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
        if self._chunks:
            self._chunks.clear()
            self._buffered = 0
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    @property
    def body_complete(self) -> bool:
        return self._complete

    async def stream(self) -> AsyncIterator[bytes]:
        """The body as it arrives. Can be consumed once (unless `body()` already read it)."""
        if self._body is not None:
            if self._body:
                yield self._body
            return
        if self._streamed:
            raise RuntimeError("the request body was already consumed")
        self._streamed = True
        conn = self._conn
        if conn is not None:
            conn.body_read_started(self)
        while True:
            chunks = self._chunks
            if chunks:
                chunk = chunks.popleft()
                self._buffered -= len(chunk)
                if conn is not None:
                    conn.body_consumed(self)
                yield chunk
                continue
            if self._error is not None:
                raise self._error
            if self._complete:
                return
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None

    async def body(self) -> bytes:
        """The whole body (at most the body limit: beyond it `BodyTooLarge`, answered 413)."""
        body = self._body
        if body is not None:
            return body
        if self._complete and not self._streamed and self._error is None:
            chunks = self._chunks
            if not chunks:
                body = b""
            elif len(chunks) == 1:
                body = chunks[0]
            else:
                body = b"".join(chunks)
            self._chunks = None
            self._buffered = 0
            self._streamed = True
        else:
            parts = [chunk async for chunk in self.stream()]
            body = b"".join(parts)
        self._body = body
        return body

    async def json(self) -> Any:
        """The body parsed as JSON; malformed JSON is answered with 400."""
        data = await self.body()
        try:
            return _json.loads(data)
        except ValueError as exc:
            raise HTTPException(400, "the request body is not valid JSON") from exc

    async def form(self) -> FormData:
        """The body parsed as ``application/x-www-form-urlencoded`` or ``multipart/form-data``
        (bounded by the form limits)."""
        if self._form is None:
            from flowcoro.http.forms import parse_form

            self._form = await parse_form(self)
        return self._form

    def __repr__(self) -> str:
        return f"Request({self.method} {self.path!r})"
