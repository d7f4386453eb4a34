"""Middleware: plain onion functions ``async def mw(request, call_next) -> Response``.

App middleware wraps every route; route middleware (``@app.get(..., middleware=[...])``) and a
mounted router's middleware wrap only their routes, inside the app's. Chains are composed once,
when the app is wired; a route with no middleware calls its handler directly. Middleware run in
the request's task and context, so a context variable set by one is visible in the handler and
in everything the handler awaits.

Exceptions that have a handler (including every `HTTPException`) are turned into responses
innermost, so middleware see a response; other exceptions propagate through them and become a
500 at the edge.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from flowcoro.http.response import Response, to_response

if TYPE_CHECKING:
    from flowcoro.http.exceptions import ExceptionHandlers
    from flowcoro.http.request import Request
    from flowcoro.http.routing import Route

__all__ = ["Middleware", "CallNext", "Endpoint", "compose", "make_endpoint"]

Endpoint = Callable[["Request"], Awaitable[Response]]
CallNext = Endpoint
Middleware = Callable[["Request", CallNext], Awaitable[Any]]


def make_endpoint(route: Route, handlers: ExceptionHandlers) -> Endpoint:
    """The innermost callable of a route: handler call, result conversion, exception handlers."""
    handler = route.handler
    lookup = handlers.lookup

    async def endpoint(request: Request) -> Response:
        try:
            params = request.path_params
            if params:
                result = await handler(request, **params)
            else:
                result = await handler(request)
        except Exception as exc:
            request.exception = exc
            on_error = lookup(exc)
            if on_error is None:
                raise
            return to_response(await on_error(request, exc))
        if type(result) is Response or isinstance(result, Response):
            return result
        return to_response(result)

    return endpoint


def _link(mw: Middleware, call_next: Endpoint) -> Endpoint:
    async def call(request: Request) -> Response:
        return to_response(await mw(request, call_next))

    return call


def _outermost(mw: Middleware, call_next: Endpoint) -> Endpoint:
    """The outermost layer, when it is a coroutine function: its own coroutine is what the
    server runs (no frame of ours around it); the server converts what it returns, as it
    does a handler's (the inner layers convert for the middleware that await them)."""

    def call(request: Request) -> Any:
        return mw(request, call_next)

    return call


def _is_async(mw: Middleware) -> bool:
    """A coroutine function, or an instance whose ``__call__`` is one (``mw`` is callable)."""
    return inspect.iscoroutinefunction(mw) or inspect.iscoroutinefunction(type(mw).__call__)


def compose(endpoint: Endpoint, middleware: Sequence[Middleware]) -> Endpoint:
    """``middleware[0]`` is the outermost layer."""
    for mw in middleware:
        if not callable(mw):
            raise TypeError(f"middleware {mw!r} is not callable")
    for i, mw in enumerate(reversed(middleware)):
        if i == len(middleware) - 1 and _is_async(mw):
            endpoint = _outermost(mw, endpoint)
        else:
            endpoint = _link(mw, endpoint)
    return endpoint
