"""Responses: bytes, text, HTML, JSON, streaming and redirects, with headers and cookies.

A handler may also return ``str`` (text/plain), ``bytes`` (application/octet-stream), a ``dict``
or ``list`` (JSON) or ``None`` (204); `to_response` does that conversion. The status line and
the content-type line are rendered once per (status, media type) and cached.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable, Mapping
from datetime import datetime
from http import HTTPStatus
from typing import Any, Literal
from urllib.parse import quote

from flowcoro.http._json import dumps as _dumps
from flowcoro.http.cookies import build_set_cookie
from flowcoro.http.headers import check_header

__all__ = [
    "Response",
    "PlainTextResponse",
    "HTMLResponse",
    "JSONResponse",
    "StreamingResponse",
    "RedirectResponse",
    "to_response",
    "status_line",
]

_STATUS: dict[int, bytes] = {}
_PREFIX: dict[tuple[int, str | None], bytes] = {}
_PREFIX_200: dict[str | None, bytes] = {}
_CL = [b"content-length: %d\r\n" % n for n in range(4096)]
_KEEP = b"\r\n"
_CLOSE = b"connection: close\r\n\r\n"
_FRAMING = frozenset((b"content-length", b"transfer-encoding", b"connection"))


def status_line(status: int) -> bytes:
    line = _STATUS.get(status)
    if line is None:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        line = f"HTTP/1.1 {status} {phrase}\r\n".encode("latin-1")
        _STATUS[status] = line
    return line


def _prefix(status: int, media_type: str | None) -> bytes:
    key = (status, media_type)
    pre = _PREFIX.get(key)
    if pre is None:
        if not 100 <= status <= 599:
            raise ValueError(f"status: {status!r} is not an HTTP status code (100-599)")
        pre = status_line(status)
        if media_type is not None:
            pre += b"content-type: " + check_header("content-type", media_type)[1] + b"\r\n"
        if len(_PREFIX) < 512:
            _PREFIX[key] = pre
            if status == 200:
                _PREFIX_200[media_type] = pre
    return pre


class Response:
    """A complete response held in memory."""

    __slots__ = ("body", "headers", "media_type", "status")

    charset = "utf-8"
    default_media_type: str | None = None

    def __init__(
        self,
        body: bytes | str = b"",
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
    ) -> None:
        self.status = status
        if body.__class__ is not bytes:
            if body.__class__ is str or isinstance(body, str):
                body = body.encode(self.charset)
                if (
                    media_type is not None
                    and media_type.startswith("text/")
                    and "charset" not in media_type
                ):
                    media_type += "; charset=" + self.charset
            else:
                body = bytes(body)
        self.body: bytes = body
        self.media_type = self.default_media_type if media_type is None else media_type
        self.headers: list[tuple[bytes, bytes]] | None = None
        if headers:
            self._add_headers(headers)

    def _add_headers(self, headers: Mapping[str, str]) -> None:
        for name, value in headers.items():
            self.set_header(name, value)

    def set_header(self, name: str, value: str) -> None:
        """Add a header (a repeated name adds another field). CR, LF and NUL are refused.
        ``Content-Length``, ``Transfer-Encoding`` and ``Connection`` are the server's."""
        pair = check_header(name, value)
        if pair[0] in _FRAMING:
            raise ValueError(f"header {name!r} is set by the server from the body and keep-alive")
        if pair[0] == b"content-type":
            self.media_type = value
            return
        if self.headers is None:
            self.headers = [pair]
        else:
            self.headers.append(pair)

    def set_cookie(
        self,
        key: str,
        value: str = "",
        *,
        max_age: int | None = None,
        expires: datetime | int | None = None,
        path: str | None = "/",
        domain: str | None = None,
        secure: bool = False,
        httponly: bool = False,
        samesite: Literal["lax", "strict", "none"] | None = "lax",
    ) -> None:
        self.set_header(
            "set-cookie",
            build_set_cookie(
                key,
                value,
                max_age=max_age,
                expires=expires,
                path=path,
                domain=domain,
                secure=secure,
                httponly=httponly,
                samesite=samesite,
            ),
        )

    def delete_cookie(self, key: str, *, path: str | None = "/", domain: str | None = None) -> None:
        self.set_cookie(key, "", max_age=0, expires=0, path=path, domain=domain)

    def encode(self, keep_alive: bool, date: bytes, head_only: bool) -> bytes:
        """Head and body in one buffer (the common case: no extra headers)."""
        body = self.body
        if self.headers is not None or self.status < 200 or self.status in (204, 304):
            head = self.head(len(body), keep_alive, date)
            return head if head_only else head + body
        if self.status == 200:
            pre = _PREFIX_200.get(self.media_type) or _prefix(200, self.media_type)
        else:
            pre = _PREFIX.get((self.status, self.media_type)) or _prefix(
                self.status, self.media_type
            )
        end = _KEEP if keep_alive else _CLOSE
        length = len(body)
        cl = _CL[length] if length < 4096 else b"content-length: %d\r\n" % length
        if head_only:
            return pre + cl + date + end
        return b"".join((pre, cl, date, end, body))

    def head(
        self, length: int | None, keep_alive: bool, date: bytes, chunked: bool = False
    ) -> bytes:
        """The status line and header block. ``length`` None: no ``Content-Length`` (chunked
        framing when ``chunked``, else the body ends when the connection closes)."""
        parts = [_prefix(self.status, self.media_type)]
        if self.headers is not None:
            for name, value in self.headers:
                parts.append(name + b": " + value + b"\r\n")
        if chunked:
            parts.append(b"transfer-encoding: chunked\r\n")
        elif length is not None and self.status >= 200 and self.status not in (204, 304):
            parts.append(b"content-length: %d\r\n" % length)
        parts.append(date)
        parts.append(b"\r\n" if keep_alive else b"connection: close\r\n\r\n")
        return b"".join(parts)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status}, media_type={self.media_type!r})"


class _TextResponse(Response):
    """A text body in its class's media type: the common call (a ``str``, no media type) sets
    the four fields itself instead of going through `Response.__init__`'s conversions."""

    __slots__ = ()

    def __init__(
        self,
        body: bytes | str = b"",
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
    ) -> None:
        if body.__class__ is not str or media_type is not None:
            Response.__init__(self, body, status, headers, media_type)
            return
        self.status = status
        self.body = body.encode(self.charset)
        self.media_type = self.default_media_type
        self.headers = None
        if headers:
            self._add_headers(headers)


class PlainTextResponse(_TextResponse):
    __slots__ = ()
    default_media_type = "text/plain; charset=utf-8"


class HTMLResponse(_TextResponse):
    __slots__ = ()
    default_media_type = "text/html; charset=utf-8"


class JSONResponse(Response):
    """``content`` serialised with orjson when installed, the standard library otherwise."""

    __slots__ = ()
    default_media_type = "application/json"

    def __init__(
        self,
        content: Any,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
    ) -> None:
        # Response.__init__'s work, inline (the body is bytes already): one call less.
        self.status = status
        self.body = _dumps(content)
        self.media_type = self.default_media_type if media_type is None else media_type
        self.headers = None
        if headers:
            self._add_headers(headers)


class StreamingResponse(Response):
    """A body produced by an async (or plain) iterable of ``bytes``/``str`` chunks, sent as it
    comes with chunked framing (or close-delimited to HTTP/1.0 clients), or with
    ``Content-Length`` when ``content_length`` is given. The writer waits while the client's
    socket buffer is full, so a slow reader slows the iterator down instead of filling memory."""

    __slots__ = ("content_length", "iterator")

    def __init__(
        self,
        content: AsyncIterable[bytes | str] | Iterable[bytes | str],
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        *,
        content_length: int | None = None,
    ) -> None:
        super().__init__(b"", status, headers, media_type)
        self.iterator = content
        self.content_length = content_length


class RedirectResponse(Response):
    __slots__ = ()

    def __init__(
        self, url: str, status: int = 307, headers: Mapping[str, str] | None = None
    ) -> None:
        if status not in (301, 302, 303, 307, 308):
            raise ValueError(f"status: {status!r} is not a redirect status")
        super().__init__(b"", status, headers)
        self.set_header("location", quote(url, safe=":/%#?=@[]!$&'()*+,;~"))


def to_response(result: Any) -> Response:
    """What a handler returned, as a `Response`."""
    if isinstance(result, Response):
        return result
    if isinstance(result, str):
        return PlainTextResponse(result)
    if isinstance(result, dict | list):
        return JSONResponse(result)
    if isinstance(result, bytes | bytearray | memoryview):
        return Response(bytes(result), media_type="application/octet-stream")
    if result is None:
        return Response(b"", 204)
    raise TypeError(
        f"a handler returned {type(result).__name__}; return a Response, str, bytes, dict, "
        "list or None"
    )
