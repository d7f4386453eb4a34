"""Errors of flowcoro-http, rooted in `HTTPError` (a `FlowCoroError`)."""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus

from flowcoro.core.errors import FlowCoroError

__all__ = [
    "HTTPError",
    "HTTPException",
    "ClientDisconnect",
    "BodyTooLarge",
    "HeaderValueError",
    "FormError",
]


class HTTPError(FlowCoroError):
    """Base class of every error flowcoro-http raises on purpose."""


class HTTPException(HTTPError):
    """Raise in a handler to answer with ``status``; ``detail`` goes into the problem-details
    body (it is meant for the client, so say only what the client may know)."""

    def __init__(
        self,
        status: int,
        detail: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if not 100 <= status <= 599:
            raise ValueError(f"status: {status!r} is not an HTTP status code (100-599)")
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Error"
        super().__init__(f"{status} {phrase}" + (f": {detail}" if detail else ""))
        self.status = status
        self.title = phrase
        self.detail = detail
        self.headers = dict(headers) if headers else None


class ClientDisconnect(HTTPError, ConnectionError):
    """The client went away before the request body was read in full."""


class BodyTooLarge(HTTPException):
    """The request body is larger than the limit (app-wide ``max_body_size`` or the route's)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body exceeds {limit} bytes")
        self.limit = limit


class HeaderValueError(HTTPError, ValueError):
    """A response header name or value is not allowed (CR, LF or NUL: response splitting)."""


class FormError(HTTPException):
    """The form body is malformed or over one of the form limits (answered with 400 or 413)."""
