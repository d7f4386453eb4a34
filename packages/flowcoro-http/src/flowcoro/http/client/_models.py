"""`Response`: status, headers, and a body that is either in memory or streamed."""

from __future__ import annotations

import codecs
from collections.abc import AsyncIterator, Callable
from http import HTTPStatus
from types import TracebackType
from typing import TYPE_CHECKING, Any

from flowcoro.http.client._body import loads_json
from flowcoro.http.client._connection import WANT_DATA, HTTPConnection
from flowcoro.http.client._decoders import Decoder
from flowcoro.http.client._headers import Headers
from flowcoro.http.client.errors import (
    HTTPStatusError,
    ProtocolError,
    ResponseNotRead,
    ResponseTooLarge,
    StreamConsumed,
)

if TYPE_CHECKING:
    Release = Callable[[HTTPConnection, bool], None]

__all__ = ["Response"]

_REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})


class Response:
    """An HTTP response. From ``client.get()`` & co. the body is already read (``content``);
    from ``client.stream()`` it is read with ``aiter_bytes()`` or ``await read()``."""

    __slots__ = (
        "__weakref__",
        "_closed",
        "_conn",
        "_consumed",
        "_content",
        "_decoder",
        "_headers",
        "_max_body",
        "_raw_headers",
        "_read_timeout",
        "_reason",
        "_release",
        "history",
        "http_version",
        "method",
        "status_code",
        "url",
    )

    def __init__(
        self,
        status_code: int,
        *,
        method: str,
        url: str,
        raw_headers: list[tuple[bytes, bytes]] | None = None,
        headers: Headers | None = None,
        content: bytes | None = None,
        http_version: str = "HTTP/1.1",
        reason: bytes = b"",
    ) -> None:
        self.status_code = status_code
        self.method = method
        self.url = url
        self.http_version = http_version
        self._reason = reason
        self._raw_headers = raw_headers
        self._headers = headers
        self._content = content
        self.history: list[Response] = []
        self._conn: HTTPConnection | None = None
        self._release: Release | None = None
        self._decoder: Decoder | None = None
        self._max_body = 0
        self._read_timeout: float | None = None
        self._consumed = content is not None
        self._closed = content is not None

    def _attach(
        self,
        conn: HTTPConnection,
        release: Release,
        decoder: Decoder | None,
        max_body: int,
        read_timeout: float | None,
    ) -> None:
        """Make this a streamed response reading from ``conn`` (given back with ``release``)."""
        self._conn = conn
        self._release = release
        self._decoder = decoder
        self._max_body = max_body
        self._read_timeout = read_timeout

    # ------------------------------------------------------------------ metadata

    @property
    def headers(self) -> Headers:
        headers = self._headers
        if headers is None:
            headers = self._headers = Headers.from_raw(self._raw_headers or [])
        return headers

    @property
    def reason_phrase(self) -> str:
        if self._reason:
            return self._reason.decode("latin-1")
        try:
            return HTTPStatus(self.status_code).phrase
        except ValueError:
            return ""

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def is_redirect(self) -> bool:
        return self.status_code in _REDIRECT_STATUS and "location" in self.headers

    @property
    def is_error(self) -> bool:
        return self.status_code >= 400

    @property
    def is_closed(self) -> bool:
        return self._closed

    @property
    def encoding(self) -> str:
        """The charset of ``Content-Type`` (valid codec names only), else utf-8."""
        ctype = self.headers.get("content-type", "")
        for param in ctype.split(";")[1:]:
            key, _, value = param.strip().partition("=")
            if key.lower() == "charset" and value:
                name = value.strip().strip('"')
                try:
                    return codecs.lookup(name).name
                except LookupError:
                    break
        return "utf-8"

    def raise_for_status(self) -> Response:
        """Raise `HTTPStatusError` for 4xx/5xx; return the response otherwise (chainable)."""
        if self.status_code >= 400:
            kind = "client error" if self.status_code < 500 else "server error"
            raise HTTPStatusError(f"{kind} {self.status_code} {self.reason_phrase}", response=self)
        return self

    # ------------------------------------------------------------------ body

    @property
    def content(self) -> bytes:
        if self._content is None:
            raise ResponseNotRead(
                "the streamed body was not read: await response.read() first",
                method=self.method,
                url=self.url,
            )
        return self._content

    @property
    def text(self) -> str:
        return self.content.decode(self.encoding, errors="replace")

    def json(self, **kwargs: Any) -> Any:
        """The body parsed as JSON (orjson when installed; ``kwargs`` need the stdlib)."""
        if kwargs:
            import json

            return json.loads(self.content, **kwargs)
        return loads_json(self.content)

    async def read(self) -> bytes:
        """Read the whole (decoded) body, at most the client's ``max_body_size`` bytes."""
        if self._content is not None:
            return self._content
        limit = self._max_body
        parts: list[bytes] = []
        size = 0
        async for chunk in self.aiter_bytes():
            size += len(chunk)
            if size > limit:
                await self.aclose()
                raise ResponseTooLarge(limit, method=self.method, url=self.url)
            parts.append(chunk)
        self._content = b"".join(parts)
        return self._content

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The decoded body in the chunks it arrives in (gzip/deflate undone)."""
        decoder = self._decoder
        async for chunk in self.aiter_raw():
            if decoder is not None:
                try:
                    chunk = decoder.decode(chunk)
                except Exception as exc:
                    await self.aclose()
                    raise ProtocolError(
                        f"cannot decode the {self.headers.get('content-encoding')} body: {exc}",
                        method=self.method,
                        url=self.url,
                    ) from exc
            if chunk:
                yield chunk
        if decoder is not None:
            tail = decoder.flush()
            if tail:
                yield tail

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        """The body as received (still compressed if it was)."""
        if self._content is not None and self._conn is None:
            if self._content:
                yield self._content
            return
        if self._consumed:
            raise StreamConsumed(
                "the response body was already read or the response closed",
                method=self.method,
                url=self.url,
            )
        self._consumed = True
        conn = self._conn
        assert conn is not None
        try:
            while True:
                await conn.wait(WANT_DATA, self._read_timeout)
                data = conn.take_body()
                if data:
                    yield data
                elif conn.complete:
                    break
        except BaseException:
            self._close_now(reuse=False)
            raise
        self._close_now(reuse=True)

    def _close_now(self, *, reuse: bool) -> None:
        if self._closed:
            return
        self._closed = True
        conn, release = self._conn, self._release
        self._conn = self._release = None
        if conn is not None and release is not None:
            release(conn, reuse)

    async def aclose(self) -> None:
        """Close the response; a body not read to the end means its connection is closed."""
        self._close_now(reuse=False)

    async def __aenter__(self) -> Response:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<Response [{self.status_code} {self.reason_phrase}] {self.method} {self.url}>"
