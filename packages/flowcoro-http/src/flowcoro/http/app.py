"""`App`: the core `flowcoro.core.App` plus routes, middleware, exception handlers and serving.

Wiring happens once, on the first `protocol_factory()` (which `serve` and ``flowcoro serve``
call): plugin middleware, routes and observers are collected through this package's hooks,
every route's middleware chain is composed and the router is compiled. From then on the routes
are fixed and the protocol calls the composed endpoints directly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from flowcoro.core import App as CoreApp
from flowcoro.core.plugins import Plugins, flatten
from flowcoro.core.settings import Setting
from flowcoro.http.errors import HTTPException
from flowcoro.http.exceptions import ExceptionHandler, ExceptionHandlers
from flowcoro.http.limits import HTTPLimits
from flowcoro.http.middleware import Middleware, compose, make_endpoint
from flowcoro.http.protocol import HTTPProtocol, RequestObserver, ServerState
from flowcoro.http.request import Request
from flowcoro.http.response import Response
from flowcoro.http.routing import Route, RouteDecorators, Router

if TYPE_CHECKING:
    import ssl as _ssl

    from flowcoro.net import Limits, Server

__all__ = ["App", "http_settings"]

H = TypeVar("H", bound=Callable[..., Any])
E = TypeVar("E", bound=ExceptionHandler)

_DEFAULTS = HTTPLimits()
# setting key -> HTTPLimits field
_LIMIT_SETTINGS = {
    "http_max_body_size": "max_body_size",
    "http_max_header_size": "max_header_size",
    "http_max_concurrency": "max_concurrency",
    "http_keepalive_timeout": "keepalive_timeout",
    "http_header_timeout": "header_timeout",
    "http_body_timeout": "body_timeout",
}


def http_settings() -> list[Setting]:
    """The settings flowcoro-http reads (``FLOWCORO_HTTP_*``)."""
    out = [
        Setting("http_host", str, "127.0.0.1", "address `flowcoro serve` listens on"),
        Setting("http_port", int, 8000, "TCP port `flowcoro serve` listens on"),
        Setting("http_access_log", bool, False, "log one line per request (flowcoro.http.access)"),
        Setting("http_drain_timeout", float, 30.0, "graceful shutdown bound, in seconds"),
    ]
    for key, field in _LIMIT_SETTINGS.items():
        default = getattr(_DEFAULTS, field)
        out.append(Setting(key, type(default), default, f"HTTPLimits.{field}", minimum=0))
    return out


async def _fallback(request: Request) -> Response:
    """No route answered: 404, 405 with ``Allow``, or the automatic OPTIONS answer."""
    allow = request._allow
    if allow is None:
        if request.path == "*" and request.method == "OPTIONS":
            allow = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
        else:
            raise HTTPException(404, f"no route matches {request.path!r}")
    if request.method == "OPTIONS":
        return Response(b"", 204, {"allow": allow})
    raise HTTPException(405, f"{request.method} is not allowed here", headers={"allow": allow})


class App(CoreApp, RouteDecorators):
    """An HTTP application: ``@app.get("/users/{id:int}")`` and friends, then `serve`."""

    def __init__(
        self,
        name: str = "flowcoro",
        *,
        limits: HTTPLimits | None = None,
        middleware: Sequence[Middleware] = (),
        access_log: bool | None = None,
        settings_file: str | Path | None = None,
        env: Any = None,
        plugins: Plugins | None = None,
        **settings: Any,
    ) -> None:
        super().__init__(name, settings_file=settings_file, env=env, plugins=plugins, **settings)
        if limits is None:
            changes = {
                field: self.settings[key]
                for key, field in _LIMIT_SETTINGS.items()
                if self.settings.get(key) is not None
            }
            limits = _DEFAULTS.replace(**changes) if changes else _DEFAULTS
        self.limits = limits
        self.router = Router()
        self.middleware: list[Middleware] = list(middleware)
        self.exception_handlers = ExceptionHandlers()
        self.observers: list[RequestObserver] = []
        self.access_log = (
            bool(self.settings.get("http_access_log", False)) if access_log is None else access_log
        )
        self._state: ServerState | None = None

    # -- declaring the application --------------------------------------------------------

    def _check_open(self) -> None:
        if self._state is not None:
            raise RuntimeError(f"app {self.name!r} is already serving: routes are fixed")

    def add_route(
        self,
        path: str,
        handler: Callable[..., Any],
        methods: Iterable[str] = ("GET",),
        *,
        name: str | None = None,
        middleware: Sequence[Middleware] = (),
        max_body_size: int | None = None,
    ) -> Route:
        self._check_open()
        return self.router.add_route(
            path, handler, methods, name=name, middleware=middleware, max_body_size=max_body_size
        )

    def websocket(self, path: str, **options: Any) -> Callable[[H], H]:
        """``@app.websocket("/ws/{room}")``: ``async def h(ws, room)`` serves WebSocket
        connections on this path; ``options`` are `flowcoro.http.ws.WSOptions` fields."""
        # Integration point for flowcoro.http.ws (a route of kind WEBSOCKET; the protocol
        # hands a matching Upgrade request to flowcoro.http.ws._server.upgrade).
        from flowcoro.http.routing import WEBSOCKET
        from flowcoro.http.ws import WebSocketRoute, WSOptions

        def decorate(handler: H) -> H:
            self._check_open()
            endpoint = WebSocketRoute(handler, WSOptions(**options))
            self.router.add_route(path, endpoint, (WEBSOCKET,), name=handler.__name__)
            return handler

        return decorate

    def mount(self, prefix: str, router: Router) -> None:
        """Serve a `Router`'s routes under ``prefix``."""
        self._check_open()
        self.router.mount(prefix, router)

    def static(self, prefix: str, directory: str | Path, **options: Any) -> None:
        """Serve the files under ``directory`` at ``prefix`` (GET and HEAD); ``options`` go to
        `flowcoro.http.staticfiles.StaticFiles` (index, precompressed, dotfiles, ...)."""
        # Integration point for the static files module (kept out of this hot-path module).
        from flowcoro.http.staticfiles import mount_static

        self._check_open()
        mount_static(self, prefix, directory, **options)

    @property
    def asgi(self) -> Any:
        """This app as an ASGI 3 application (for uvicorn, granian, hypercorn)."""
        # Integration point for the ASGI export adapter (flowcoro.http.asgi.export).
        from flowcoro.http.asgi.export import ASGIAdapter

        adapter = self.__dict__.get("_asgi_adapter")
        if adapter is None:
            adapter = self.__dict__["_asgi_adapter"] = ASGIAdapter(self)
        return adapter

    def add_middleware(self, middleware: Middleware) -> None:
        """Add an app-wide middleware; the first added is the outermost."""
        self._check_open()
        if not callable(middleware):
            raise TypeError(f"middleware {middleware!r} is not callable")
        self.middleware.append(middleware)

    def use(self, middleware: H) -> H:
        """Decorator form of `add_middleware`."""
        self.add_middleware(middleware)
        return middleware

    def exception_handler(self, exc_type: type[BaseException]) -> Callable[[E], E]:
        """Handle ``exc_type`` (and subclasses) with ``async def h(request, exc) -> response``."""

        def decorate(handler: E) -> E:
            self.exception_handlers.add(exc_type, handler)
            return handler

        return decorate

    def add_observer(self, observer: RequestObserver) -> None:
        self._check_open()
        self.observers.append(observer)

    # -- wiring and serving ---------------------------------------------------------------

    def _hook(self, name: str) -> list[Any]:
        caller = getattr(self.plugins.hook, name, None)
        if caller is None:
            return []
        return flatten(caller(app=self))

    def wire(self) -> ServerState:
        """Collect plugin contributions, compose middleware chains and compile the router
        (once); returns the state every connection shares."""
        if self._state is not None:
            return self._state
        middleware = [*self._hook("flowcoro_http_middleware"), *self.middleware]
        routes = self.router.routes()
        for route in self._hook("flowcoro_http_routes"):
            if not isinstance(route, Route):
                raise TypeError(f"flowcoro_http_routes returned {route!r}, not a Route")
            routes.append(route)
        observers = [*self._hook("flowcoro_http_observers"), *self.observers]
        handlers = self.exception_handlers
        for route in routes:
            chain = [*middleware, *route.middleware]
            if chain:
                route.endpoint = compose(make_endpoint(route, handlers), chain)
                route.direct = False
            else:
                # No middleware: the protocol calls the handler itself (one frame less per
                # request) and applies the exception handlers the same way.
                route.endpoint = route.handler
                route.direct = True
        self.router.compile(routes)
        fallback = (
            compose(make_endpoint(Route("/", _fallback), handlers), middleware)
            if middleware
            else _fallback
        )
        self._state = ServerState(
            self.router,
            app=self,
            limits=self.limits,
            handlers=handlers,
            fallback=fallback,
            observers=observers,
            access_log=self.access_log,
        )
        return self._state

    def protocol_factory(self) -> Callable[[], HTTPProtocol]:
        """What `flowcoro.net.start_server` needs: a new `HTTPProtocol` per connection."""
        state = self.wire()

        def factory() -> HTTPProtocol:
            return HTTPProtocol(state)

        return factory

    async def serve(
        self,
        host: str | None = "127.0.0.1",
        port: int | None = 8000,
        *,
        uds: str | None = None,
        ssl: _ssl.SSLContext | None = None,
        reuse_port: bool = False,
        net_limits: Limits | None = None,
    ) -> Server:
        """Start the app (if it is not started) and listen; returns the running server.
        ``await server.shutdown(drain_timeout)`` then ``await app.stop()`` to finish."""
        from flowcoro.net import start_server

        if not self.started:
            await self.start()
        return await start_server(
            self.protocol_factory(),
            host=host if port is not None else None,
            port=port,
            uds=uds,
            ssl=ssl,
            reuse_port=reuse_port,
            limits=net_limits,
        )
