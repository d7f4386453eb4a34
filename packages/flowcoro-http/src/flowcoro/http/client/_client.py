"""`Client`: requests over a keep-alive connection pool per origin (core `Pool`)."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Final

from flowcoro.core.deadline import effective_timeout, remaining
from flowcoro.core.errors import DeadlineExceeded
from flowcoro.core.pool import PoolStatistics
from flowcoro.http._version import __version__
from flowcoro.http.client._body import UNSET, ContentType, encode_body, iterate
from flowcoro.http.client._config import DEFAULT_LIMITS, DEFAULT_TIMEOUT, Limits, Timeout
from flowcoro.http.client._connection import WANT_COMPLETE, WANT_HEADERS, HTTPConnection
from flowcoro.http.client._cookies import CookieJar
from flowcoro.http.client._decoders import decode_all, make_decoder
from flowcoro.http.client._headers import Headers, HeadersType, check_header
from flowcoro.http.client._models import Response
from flowcoro.http.client._pool import OriginPools, VerifyType
from flowcoro.http.client._url import ParamsType, Target, join_url, parse_url
from flowcoro.http.client.errors import (
    ClientClosed,
    ClientError,
    ProtocolError,
    ReadError,
    ResponseTooLarge,
    TimeoutException,
    TooManyRedirects,
    WriteTimeout,
)

__all__ = ["Client", "VerifyType"]

_IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH"})
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
_TOKEN_CHARS: Final = frozenset(
    "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)
_SINGLE_WRITE: Final = 64 * 1024  # bodies up to this size go out with the head in one write
_DRAIN_REDIRECT_BODY: Final = 64 * 1024
_CROSS_ORIGIN_DROP: Final = ("authorization", "proxy-authorization", "cookie")
_BODY_HEADERS: Final = ("content-type", "content-length", "transfer-encoding")


class Client:
    """An HTTP/1.1 client with a keep-alive pool per origin. Use ``async with Client() as c:``.

    Proxies are not supported (out of scope); nor are HTTP/2, multipart uploads or
    ``Expect: 100-continue``.
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        headers: HeadersType | None = None,
        timeout: Timeout | float | None = DEFAULT_TIMEOUT,
        limits: Limits = DEFAULT_LIMITS,
        verify: VerifyType = True,
        cert: str | tuple[str, str] | None = None,
        follow_redirects: bool = True,
        max_redirects: int = 10,
        cookies: bool = False,
        decompress: bool = True,
    ) -> None:
        if not isinstance(limits, Limits):
            raise TypeError(f"Client: 'limits' must be a Limits, got {limits!r}")
        self._limits = limits.validate()
        self._timeout = Timeout.of(timeout)
        if isinstance(max_redirects, bool) or not isinstance(max_redirects, int):
            raise TypeError(f"Client: 'max_redirects' must be an int, got {max_redirects!r}")
        if max_redirects < 0:
            raise ValueError(f"Client: 'max_redirects' must be >= 0, got {max_redirects!r}")
        if not isinstance(verify, bool | str | ssl.SSLContext):
            raise TypeError(
                f"Client: 'verify' must be a bool, a CA file path or an SSLContext, got {verify!r}"
            )
        self._follow = follow_redirects
        self._max_redirects = max_redirects
        self._jar = CookieJar() if cookies else None
        self._decompress = decompress
        self._base_url = base_url
        if base_url is not None:
            parse_url(base_url)  # validate now: a bad base URL names itself at construction
        self._joined: dict[str, str] = {}
        defaults: dict[str, tuple[str, str]] = {
            "user-agent": ("User-Agent", f"flowcoro-http/{__version__}"),
            "accept": ("Accept", "*/*"),
        }
        if decompress:
            defaults["accept-encoding"] = ("Accept-Encoding", "gzip, deflate")
        for name, value in Headers(headers).items_list():
            check_header(name, value)
            defaults[name.lower()] = (name, value)
        self._defaults = defaults
        self._default_host = defaults.get("host")
        self._default_block = "".join(
            f"{n}: {v}\r\n" for key, (n, v) in defaults.items() if key != "host"
        )
        _encode_head(self._default_block)  # fail now on headers that are not latin-1
        self._origins = OriginPools(self._limits, self._timeout, verify, cert)
        if isinstance(verify, str) or cert is not None:
            self._origins.ssl_context()  # a bad CA bundle or certificate fails here, by name
        self._closed = False

    # ------------------------------------------------------------------ public API

    @property
    def cookies(self) -> CookieJar | None:
        """The cookie jar (``cookies=True``), else None."""
        return self._jar

    @property
    def timeout(self) -> Timeout:
        return self._timeout

    @property
    def limits(self) -> Limits:
        return self._limits

    @property
    def is_closed(self) -> bool:
        return self._closed

    def pool_statistics(self) -> dict[str, PoolStatistics]:
        """Statistics of each origin's pool, keyed ``scheme://host:port``."""
        return self._origins.statistics()

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: ParamsType | None = None,
        headers: HeadersType | None = None,
        content: ContentType | None = None,
        data: Mapping[str, Any] | None = None,
        json: Any = UNSET,
        timeout: Timeout | float | Any | None = UNSET,
        follow_redirects: bool | None = None,
    ) -> Response:
        """Send a request and read the whole response body (at most ``max_body_size``)."""
        return await self._request(
            method, url, params, headers, content, data, json, timeout, follow_redirects, False
        )

    async def get(self, url: str, **kwargs: Any) -> Response:
        return await self.request("GET", url, **kwargs)

    async def head(self, url: str, **kwargs: Any) -> Response:
        return await self.request("HEAD", url, **kwargs)

    async def options(self, url: str, **kwargs: Any) -> Response:
        return await self.request("OPTIONS", url, **kwargs)

    async def delete(self, url: str, **kwargs: Any) -> Response:
        return await self.request("DELETE", url, **kwargs)

    async def post(self, url: str, **kwargs: Any) -> Response:
        return await self.request("POST", url, **kwargs)

    async def put(self, url: str, **kwargs: Any) -> Response:
        return await self.request("PUT", url, **kwargs)

    async def patch(self, url: str, **kwargs: Any) -> Response:
        return await self.request("PATCH", url, **kwargs)

    def stream(
        self,
        method: str,
        url: str,
        *,
        params: ParamsType | None = None,
        headers: HeadersType | None = None,
        content: ContentType | None = None,
        data: Mapping[str, Any] | None = None,
        json: Any = UNSET,
        timeout: Timeout | float | Any | None = UNSET,
        follow_redirects: bool | None = None,
    ) -> _StreamContext:
        """``async with client.stream("GET", url) as r: async for chunk in r.aiter_bytes()``.

        The body is not read up front; leaving the block closes the response (and, when the
        body was not read to the end, its connection).
        """
        args = (method, url, params, headers, content, data, json, timeout, follow_redirects)
        return _StreamContext(self, args)

    async def aclose(self) -> None:
        """Close every pool and connection; requests made afterwards raise `ClientClosed`."""
        self._closed = True
        await self._origins.aclose()

    async def __aenter__(self) -> Client:
        if self._closed:
            raise ClientClosed("the client is closed")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ request flow

    async def _request(
        self,
        method: str,
        url: str,
        params: ParamsType | None,
        headers: HeadersType | None,
        content: ContentType | None,
        data: Mapping[str, Any] | None,
        json: Any,
        timeout: Any,
        follow_redirects: bool | None,
        stream: bool,
    ) -> Response:
        if method not in _IDEMPOTENT and method not in _BODY_METHODS:
            method = _check_method(method)
        if self._base_url is not None:
            url = self._join(url)
        target = parse_url(url, params, method=method)
        timeouts = self._timeout if timeout is UNSET else Timeout.of(timeout)
        body, ctype = encode_body(content, data, json)
        user_headers: list[tuple[str, str]] | None = None
        if headers is not None:
            user_headers = Headers(headers).items_list()
            for name, value in user_headers:
                check_header(name, value)
        follow = self._follow if follow_redirects is None else follow_redirects
        response = await self._send(method, target, user_headers, body, ctype, timeouts, stream)
        if not follow or response.status_code not in _REDIRECTS:
            return response
        history: list[Response] = []
        while True:
            location = response.headers.get("location")
            if location is None:
                break
            if len(history) >= self._max_redirects:
                await response.aclose()
                raise TooManyRedirects(
                    f"more than max_redirects={self._max_redirects} redirects",
                    method=method,
                    url=target.url,
                )
            status = response.status_code
            if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
                method, body, ctype = "GET", None, None
                if user_headers is not None:
                    user_headers = [h for h in user_headers if h[0].lower() not in _BODY_HEADERS]
            elif body is not None and not isinstance(body, bytes):
                break  # 307/308 with a one-shot streamed body: cannot replay, hand it back
            try:
                next_target = parse_url(join_url(target.url, location), method=method)
            except ClientError as exc:
                await response.aclose()
                raise ProtocolError(
                    f"redirect to an unusable Location {location!r}: {exc.reason}",
                    method=method,
                    url=target.url,
                ) from exc
            if stream:
                await self._drain_redirect(response)
            history.append(response)
            if next_target.origin != target.origin and user_headers is not None:
                user_headers = [h for h in user_headers if h[0].lower() not in _CROSS_ORIGIN_DROP]
            target = next_target
            response = await self._send(method, target, user_headers, body, ctype, timeouts, stream)
            if response.status_code not in _REDIRECTS:
                break
        response.history = history
        return response

    async def _drain_redirect(self, response: Response) -> None:
        length = response.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) <= _DRAIN_REDIRECT_BODY:
            try:
                await response.read()
            except ClientError:
                pass
        await response.aclose()

    async def _send(
        self,
        method: str,
        target: Target,
        user_headers: list[tuple[str, str]] | None,
        body: Any,
        ctype: str | None,
        timeouts: Timeout,
        stream: bool,
    ) -> Response:
        """One exchange on a pooled connection, retried once on a fresh connection when an
        idempotent request met a kept-alive connection that the server had closed."""
        if self._closed:
            raise ClientClosed("the client is closed", method=method, url=target.url)
        if remaining() == 0.0:
            raise TimeoutException(
                "the caller's deadline expired before the request was sent",
                method=method,
                url=target.url,
            )
        head = self._head(method, target, user_headers, body, ctype)
        origins = self._origins
        pool = origins.pools.get(target.origin)
        if pool is None:
            pool = origins.new_pool(target)
        can_retry = method in _IDEMPOTENT and (body is None or isinstance(body, bytes))
        limits = self._limits
        retried = False
        while True:
            conn = await origins.acquire(pool, method, target, timeouts, fresh=retried)
            reused = conn.requests > 0
            conn.begin(
                method,
                target.url,
                is_head=method == "HEAD",
                streaming=stream,
                max_body=limits.max_body_size,
            )
            try:
                if body is None or (isinstance(body, bytes) and len(body) <= _SINGLE_WRITE):
                    conn.write(head + body if body else head)
                else:
                    await self._write_body(conn, head, body, timeouts.write)
                await conn.wait(WANT_HEADERS if stream else WANT_COMPLETE, timeouts.read)
            except ReadError as exc:
                conn.finish_request()
                pool.put_nowait(conn, discard=True)
                if exc.retryable and reused and can_retry and not retried:
                    retried = True
                    continue
                raise
            except BaseException:
                # Cancelled or failed mid-exchange: the connection is in an unknown state.
                conn.finish_request()
                pool.put_nowait(conn, discard=True)
                raise
            break
        response = Response(
            conn.status,
            method=method,
            url=target.url,
            raw_headers=conn.headers,
            http_version="HTTP/1.1" if conn.version == "1.1" else f"HTTP/{conn.version}",
            reason=conn.reason,
        )
        jar = self._jar
        if jar is not None:
            set_cookie = response.headers.get_list("set-cookie")
            if set_cookie:
                jar.extract(target.host, target.path, set_cookie)
        encoding = conn.content_encoding if self._decompress else None
        if stream:
            response._attach(
                conn,
                _release,
                make_decoder(encoding),
                limits.max_body_size,
                timeouts.read,
            )
            return response
        raw = conn.take_body()
        conn.finish_request()
        pool.put_nowait(conn, discard=not conn.reusable())
        if encoding is not None and raw and (encoding in (b"gzip", b"x-gzip", b"deflate")):
            try:
                decoded = decode_all(encoding, raw, limits.max_body_size)
            except Exception as exc:
                raise ProtocolError(
                    f"cannot decode the {encoding.decode('latin-1')} body: {exc}",
                    method=method,
                    url=target.url,
                ) from exc
            if decoded is None:
                raise ResponseTooLarge(limits.max_body_size, method=method, url=target.url)
            raw = decoded
        response._content = raw
        return response

    async def _write_body(
        self, conn: HTTPConnection, head: bytes, body: Any, write_timeout: float | None
    ) -> None:
        if isinstance(body, bytes):
            conn.write(head)
            conn.write(body)
            await conn.drain(_write_limit(conn, write_timeout))
            return
        conn.write(head)
        chunked = head.endswith(b"Transfer-Encoding: chunked\r\n\r\n")
        async for chunk in iterate(body):
            if conn.headers_done:
                conn.write(chunk)  # marks the connection unusable, sends nothing
                return
            if not chunk:
                continue
            if chunked:
                conn.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
            else:
                conn.write(chunk)
            await conn.drain(_write_limit(conn, write_timeout))
        if chunked:
            conn.write(b"0\r\n\r\n")
        await conn.drain(_write_limit(conn, write_timeout))

    def _join(self, url: str) -> str:
        joined = self._joined.get(url)
        if joined is None:
            assert self._base_url is not None
            joined = join_url(self._base_url, url)
            if len(self._joined) >= 512:
                self._joined.clear()
            self._joined[url] = joined
        return joined

    def _head(
        self,
        method: str,
        target: Target,
        user_headers: list[tuple[str, str]] | None,
        body: Any,
        ctype: str | None,
    ) -> bytes:
        """The request line and headers, encoded once."""
        framing = ""
        if body is None:
            if method in _BODY_METHODS:
                framing = "Content-Length: 0\r\n"
        elif isinstance(body, bytes):
            framing = f"Content-Length: {len(body)}\r\n"
        else:
            user_headers = user_headers or []  # streamed: framing decided below
        cookie = None
        if self._jar is not None:
            cookie = self._jar.header_for(target.scheme, target.host, target.path)
        if user_headers is None and ctype is None and cookie is None:
            host = self._default_host[1] if self._default_host else target.host_header
            return _encode_head(
                f"{method} {target.target} HTTP/1.1\r\nHost: {host}\r\n"
                f"{self._default_block}{framing}\r\n"
            )
        merged = dict(self._defaults)
        if ctype is not None:
            merged["content-type"] = ("Content-Type", ctype)
        if cookie is not None:
            merged["cookie"] = ("Cookie", cookie)
        for name, value in user_headers or ():
            merged[name.lower()] = (name, value)
        host_entry = merged.pop("host", None)
        host = host_entry[1] if host_entry else target.host_header
        if body is not None and not isinstance(body, bytes):
            if "content-length" not in merged:
                merged.pop("transfer-encoding", None)
                framing = "Transfer-Encoding: chunked\r\n"
        else:
            merged.pop("content-length", None)
            merged.pop("transfer-encoding", None)
        lines = "".join(f"{n}: {v}\r\n" for n, v in merged.values())
        return _encode_head(
            f"{method} {target.target} HTTP/1.1\r\nHost: {host}\r\n{lines}{framing}\r\n"
        )


def _write_limit(conn: HTTPConnection, write_timeout: float | None) -> float | None:
    try:
        return effective_timeout(write_timeout)
    except DeadlineExceeded as exc:
        raise WriteTimeout(
            "the caller's deadline expired while the request body was being sent",
            method=conn.method,
            url=conn.url,
        ) from exc


def _release(conn: HTTPConnection, reuse: bool) -> None:
    conn.finish_request()
    conn.pool.put_nowait(conn, discard=not (reuse and conn.reusable()))


def _encode_head(head: str) -> bytes:
    try:
        return head.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"request headers must be latin-1 text: {head[exc.start : exc.end]!r} is not"
        ) from exc


def _check_method(method: str) -> str:
    if not isinstance(method, str) or not method or not set(method) <= _TOKEN_CHARS:
        raise ValueError(f"request: 'method' must be an HTTP token such as GET, got {method!r}")
    return method.upper()


class _StreamContext:
    __slots__ = ("_args", "_client", "_response")

    def __init__(self, client: Client, args: tuple[Any, ...]) -> None:
        self._client = client
        self._args = args
        self._response: Response | None = None

    async def __aenter__(self) -> Response:
        request: Any = self._client._request
        self._response = await request(*self._args, True)
        return self._response

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._response is not None:
            await self._response.aclose()
