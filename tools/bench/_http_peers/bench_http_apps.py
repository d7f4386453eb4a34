"""ASGI apps that the peer servers of tools/bench/http.py import by name.

They live in their own directory: putting tools/bench on the path would shadow the standard
library's ``http`` package with tools/bench/http.py.
"""

from __future__ import annotations

from typing import Any

TEXT = b"Hello, World!"
JSON = b'{"message":"Hello, World!"}'


async def raw_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/json":
        body, ctype = JSON, b"application/json"
    else:
        body, ctype = TEXT, b"text/plain"
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", ctype), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})


def __getattr__(name: str) -> Any:
    if name != "starlette":
        raise AttributeError(name)
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Route

    async def hello(request: Any) -> PlainTextResponse:
        return PlainTextResponse("Hello, World!")

    async def hello_json(request: Any) -> JSONResponse:
        return JSONResponse({"message": "Hello, World!"})

    return Starlette(routes=[Route("/", hello), Route("/json", hello_json)])
