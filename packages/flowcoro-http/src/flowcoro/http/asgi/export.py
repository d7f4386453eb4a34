"""`ASGIAdapter`: a flowcoro `App` as an ASGI 3 application (``app.asgi``).

For running under uvicorn, granian or hypercorn when a deployment demands it; `flowcoro serve`
is the fast path. Routing, middleware, exception handlers and responses behave as under our own
server. Differences: the request body is collected before the handler runs (bounded by the
route's or the app's ``max_body_size``: 413 beyond it); request observers and the access log are
not called (the ASGI server has its own); `FileResponse` bodies use ``http.response.pathsend``
when the server offers it. The ``lifespan`` scope starts and stops the app; without it the app
is started on the first request. The ``websocket`` scope is refused (TODO: WebSocket issue).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Callable
from typing import TYPE_CHECKING, Any

from flowcoro.core.logger import get_logger
from flowcoro.http.exceptions import problem
from flowcoro.http.request import Request
from flowcoro.http.response import Response, StreamingResponse, to_response

if TYPE_CHECKING:
    from flowcoro.http.app import App

__all__ = ["ASGIAdapter"]

log = get_logger("flowcoro.http.asgi")

Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]


class ASGIAdapter:
    """``await adapter(scope, receive, send)`` for ``lifespan`` and ``http`` scopes."""

    __slots__ = ("_lock", "app")

    def __init__(self, app: App) -> None:
        self.app = app
        self._lock: asyncio.Lock | None = None

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        else:
            # TODO(websocket issue): serve the websocket scope through the app's WebSocket routes.
            raise RuntimeError(f"flowcoro App.asgi does not serve {kind!r} scopes yet")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "lifespan.startup":
                try:
                    if not self.app.started:
                        await self.app.start()
                    self.app.wire()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif kind == "lifespan.shutdown":
                try:
                    await self.app.stop()
                except Exception as exc:
                    await send({"type": "lifespan.shutdown.failed", "message": repr(exc)})
                    return
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _ensure_started(self) -> None:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if not self.app.started:
                await self.app.start()

    async def _http(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        app = self.app
        if not app.started:
            await self._ensure_started()
        state = app.wire()
        method: str = scope["method"]
        path: str = scope["path"]
        limit = state.max_body_size
        endpoint: Any = state.fallback
        kw: dict[str, Any] | None = None
        route_path: str | None = None
        params: dict[str, Any] | None = None
        allow: str | None = None
        found = state.lookup(path)
        if found is not None:
            match, params = found
            route = match.routes.get(method)
            if route is None:
                allow = match.allow
                params = None
            else:
                route_path = route.path
                endpoint = route.endpoint
                if params is not None and route.direct:
                    kw = params
                if route.max_body_size is not None:
                    limit = route.max_body_size
        client = scope.get("client")
        request = Request(
            method,
            path,
            scope.get("query_string", b""),
            [(bytes(k).lower(), bytes(v)) for k, v in scope.get("headers", ())],
            scope.get("http_version", "1.1"),
            (client[0], client[1]) if client else None,
            app,
            None,
            b"",
        )
        request.route = route_path
        request.path_params = params
        request._allow = allow
        body = await _read_body(receive, limit)
        if body is None:
            response: Response = problem(413, f"the request body exceeds {limit} bytes")
        else:
            request._body = body
            try:
                result = await (endpoint(request, **kw) if kw else endpoint(request))
                response = to_response(result)
            except Exception as exc:
                response = await _recover(state, request, exc)
        await _send_response(response, method, scope, send)


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                return None
            parts.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(parts)


async def _recover(state: Any, request: Request, exc: Exception) -> Response:
    on_error = state.handlers.lookup(exc)
    if on_error is not None:
        try:
            return to_response(await on_error(request, exc))
        except Exception as again:
            exc = again
    log.error(
        "http.unhandled_error",
        method=request.method,
        path=request.path,
        request_id=request.id,
        exc_info=exc,
    )
    return problem(500, None, headers={"x-request-id": request.id})


async def _send_response(
    response: Response, method: str, scope: dict[str, Any], send: Send
) -> None:
    headers: list[tuple[bytes, bytes]] = []
    if response.media_type is not None:
        headers.append((b"content-type", response.media_type.encode("latin-1")))
    if response.headers:
        headers.extend(response.headers)
    head_only = method == "HEAD"
    if not isinstance(response, StreamingResponse):
        body = response.body
        if response.status >= 200 and response.status not in (204, 304):
            headers.append((b"content-length", b"%d" % len(body)))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if head_only else body})
        return
    if response.content_length is not None and response.status not in (204, 304):
        headers.append((b"content-length", b"%d" % response.content_length))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    from flowcoro.http.staticfiles import FileResponse

    extensions = scope.get("extensions") or {}
    if (
        isinstance(response, FileResponse)
        and not head_only
        and response.status == 200
        and "http.response.pathsend" in extensions
    ):
        await send({"type": "http.response.pathsend", "path": response.path})
        return
    content = response.iterator
    try:
        if not head_only:
            if isinstance(content, AsyncIterable):
                async for chunk in content:
                    await _send_chunk(send, chunk)
            else:
                for chunk in content:
                    await _send_chunk(send, chunk)
    finally:
        aclose = getattr(content, "aclose", None)
        if aclose is not None:
            await aclose()
    await send({"type": "http.response.body", "body": b""})


async def _send_chunk(send: Send, chunk: bytes | str) -> None:
    if isinstance(chunk, str):
        chunk = chunk.encode()
    if chunk:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
