"""Exception handlers and problem-details (RFC 9457) error bodies.

Handlers are looked up by the exception's type, most specific class first. `HTTPException`
has a default handler that answers ``application/problem+json``; any other exception without a
handler becomes a 500 whose body says nothing about it (the detail is logged with the request
id).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus
from typing import Any

from flowcoro.http import _json
from flowcoro.http.errors import HTTPException
from flowcoro.http.response import Response

__all__ = ["ExceptionHandler", "ExceptionHandlers", "problem"]

ExceptionHandler = Callable[[Any, Any], Awaitable[Any]]


def problem(
    status: int,
    detail: str | None = None,
    *,
    title: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> Response:
    """A problem-details response: ``{"type", "title", "status", "detail", ...}``."""
    if title is None:
        try:
            title = HTTPStatus(status).phrase
        except ValueError:
            title = "Error"
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update(extra)
    return Response(_json.dumps(body), status, headers, "application/problem+json")


async def _http_exception(request: Any, exc: HTTPException) -> Response:
    return problem(exc.status, exc.detail, title=exc.title, headers=exc.headers)


class ExceptionHandlers:
    """Exception type -> async handler ``(request, exc) -> response``."""

    __slots__ = ("_cache", "_handlers")

    def __init__(self) -> None:
        self._handlers: dict[type[BaseException], ExceptionHandler] = {
            HTTPException: _http_exception,
        }
        self._cache: dict[type[BaseException], ExceptionHandler | None] = {}

    def add(self, exc_type: type[BaseException], handler: ExceptionHandler) -> None:
        if not (isinstance(exc_type, type) and issubclass(exc_type, Exception)):
            raise TypeError(f"exc_type: {exc_type!r} is not an Exception subclass")
        self._handlers[exc_type] = handler
        self._cache.clear()

    def lookup(self, exc: BaseException) -> ExceptionHandler | None:
        cls = type(exc)
        try:
            return self._cache[cls]
        except KeyError:
            pass
        found = None
        for base in cls.__mro__:
            found = self._handlers.get(base)
            if found is not None:
                break
        self._cache[cls] = found
        return found
