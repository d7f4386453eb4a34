"""The FlowCoro HTTP/1.1 client: ``async with Client() as client: r = await client.get(url)``.

A keep-alive connection pool per origin on the core `Pool`, timeouts split into connect / read /
write / pool and bounded by the caller's ``flowcoro.core.deadline``, redirects, JSON and form
helpers, streamed request and response bodies, gzip/deflate decoding, TLS verified by default.
"""

from __future__ import annotations

from flowcoro.http.client._client import Client
from flowcoro.http.client._config import Limits, Timeout
from flowcoro.http.client._cookies import CookieJar
from flowcoro.http.client._headers import Headers
from flowcoro.http.client._models import Response
from flowcoro.http.client.errors import (
    ClientClosed,
    ClientError,
    ConnectError,
    ConnectTimeout,
    HeadersTooLarge,
    HTTPStatusError,
    InvalidURL,
    NetworkError,
    PoolTimeout,
    ProtocolError,
    ReadError,
    ReadTimeout,
    ResponseNotRead,
    ResponseTooLarge,
    StreamConsumed,
    TimeoutException,
    TooManyRedirects,
    WriteError,
    WriteTimeout,
)

__all__ = [
    "Client",
    "Response",
    "Headers",
    "Timeout",
    "Limits",
    "CookieJar",
    # errors
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
