"""flowcoro-http: a fast HTTP/1.1 server on httptools and flowcoro-net, with routing, middleware,
requests and responses, and the ``flowcoro serve`` command."""

from __future__ import annotations

from flowcoro.http._version import __version__
from flowcoro.http.app import App
from flowcoro.http.asgi import from_asgi, is_asgi_app
from flowcoro.http.client import Client
from flowcoro.http.datastructures import MultiDict, QueryParams, State
from flowcoro.http.errors import (
    BodyTooLarge,
    ClientDisconnect,
    FormError,
    HeaderValueError,
    HTTPError,
    HTTPException,
)
from flowcoro.http.exceptions import ExceptionHandlers, problem
from flowcoro.http.forms import FormData, UploadFile
from flowcoro.http.headers import Headers
from flowcoro.http.limits import HTTPLimits
from flowcoro.http.middleware import CallNext, Middleware
from flowcoro.http.protocol import HTTPProtocol, RequestObserver, ServerState
from flowcoro.http.request import Request
from flowcoro.http.response import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from flowcoro.http.routing import Route, Router
from flowcoro.http.staticfiles import FileResponse, StaticFiles, file_response
from flowcoro.http.ws import Hub, WebSocket, WebSocketClosed, WSOptions, connect_ws

__all__ = [
    "__version__",
    # application
    "App",
    "Router",
    "Route",
    "Middleware",
    "CallNext",
    "HTTPLimits",
    # requests
    "Request",
    "Headers",
    "QueryParams",
    "MultiDict",
    "State",
    "FormData",
    "UploadFile",
    # responses
    "Response",
    "PlainTextResponse",
    "HTMLResponse",
    "JSONResponse",
    "StreamingResponse",
    "RedirectResponse",
    # errors
    "HTTPError",
    "HTTPException",
    "BodyTooLarge",
    "ClientDisconnect",
    "FormError",
    "HeaderValueError",
    "ExceptionHandlers",
    "problem",
    # static files and ASGI
    "StaticFiles",
    "FileResponse",
    "file_response",
    "from_asgi",
    "is_asgi_app",
    # client
    "Client",
    # WebSocket (flowcoro.http.ws)
    "WebSocket",
    "WebSocketClosed",
    "WSOptions",
    "Hub",
    "connect_ws",
    # server internals that plugins observe
    "HTTPProtocol",
    "ServerState",
    "RequestObserver",
]
