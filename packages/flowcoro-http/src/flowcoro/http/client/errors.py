"""Errors of the HTTP client, rooted in `ClientError` (an `HTTPError`).

Every error names the request that failed: ``method`` and ``url`` are attributes and part of the
message. Categories: `TimeoutException` (connect / read / write / pool, all ``TimeoutError``),
`NetworkError` (connect / read / write, all ``ConnectionError``), `ProtocolError` (the server
broke HTTP/1.1), `TooManyRedirects`, plus `ResponseTooLarge`, `InvalidURL`, `HTTPStatusError`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowcoro.http.errors import HTTPError

if TYPE_CHECKING:
    from flowcoro.http.client._models import Response

__all__ = [
    "ClientError",
    "TimeoutException",
    "ConnectTimeout",
    "ReadTimeout",
    "WriteTimeout",
    "PoolTimeout",
    "NetworkError",
    "ConnectError",
    "ReadError",
    "WriteError",
    "ProtocolError",
    "HeadersTooLarge",
    "ResponseTooLarge",
    "TooManyRedirects",
    "InvalidURL",
    "HTTPStatusError",
    "ResponseNotRead",
    "StreamConsumed",
    "ClientClosed",
]


class ClientError(HTTPError):
    """Base of every error the HTTP client raises; ``method`` and ``url`` name the request."""

    def __init__(self, message: str, *, method: str = "", url: str = "") -> None:
        self.method = method
        self.url = url
        self.reason = message
        super().__init__(f"{message} ({method} {url})" if method or url else message)


class TimeoutException(ClientError, TimeoutError):
    """A wait ran out of time: its own timeout or the caller's core ``deadline``."""


class ConnectTimeout(TimeoutException):
    """Connecting (TCP and TLS handshake) took longer than the connect timeout."""


class ReadTimeout(TimeoutException):
    """No response bytes arrived within the read timeout."""


class WriteTimeout(TimeoutException):
    """The server did not take the request body within the write timeout."""


class PoolTimeout(TimeoutException):
    """No connection to the origin became free within the pool timeout."""


class NetworkError(ClientError, ConnectionError):
    """The connection failed: refused, reset, closed early, or TLS failed."""


class ConnectError(NetworkError):
    """The connection could not be established (refused, unreachable, TLS verification)."""


class ReadError(NetworkError):
    """The connection was closed or reset before the response was complete."""

    retryable = False  # set on instances: nothing of the response arrived on a reused connection


class WriteError(NetworkError):
    """The connection was closed or reset while the request was being sent."""


class ProtocolError(ClientError):
    """The server's response is not valid HTTP/1.1."""


class HeadersTooLarge(ProtocolError):
    """The status line and headers are larger than ``max_header_size``."""

    def __init__(self, limit: int, *, method: str = "", url: str = "") -> None:
        super().__init__(
            f"response headers exceed max_header_size={limit} bytes", method=method, url=url
        )
        self.limit = limit


class ResponseTooLarge(ClientError):
    """A body read into memory is larger than ``max_body_size`` (streaming is not limited)."""

    def __init__(self, limit: int, *, method: str = "", url: str = "") -> None:
        super().__init__(
            f"response body exceeds max_body_size={limit} bytes (stream it instead)",
            method=method,
            url=url,
        )
        self.limit = limit


class TooManyRedirects(ClientError):
    """More than ``max_redirects`` redirects were followed."""


class InvalidURL(ClientError, ValueError):
    """The URL cannot be requested (no http/https scheme, no host, bad port, CR/LF)."""


class HTTPStatusError(ClientError):
    """Raised by ``Response.raise_for_status()`` for 4xx and 5xx responses."""

    def __init__(self, message: str, *, response: Response) -> None:
        super().__init__(message, method=response.method, url=response.url)
        self.response = response


class ResponseNotRead(ClientError, RuntimeError):
    """``.content``/``.text``/``.json()`` of a streamed response before ``await r.read()``."""


class StreamConsumed(ClientError, RuntimeError):
    """The body of a streamed response was already iterated (or the response closed)."""


class ClientClosed(ClientError, RuntimeError):
    """The client was closed (``aclose()`` or the end of ``async with``)."""
