"""Routing: `Route`, `Router` and the compiled matcher the protocol calls per request.

Static paths resolve with one dict lookup; paths with parameters walk a trie of path segments
(static children before parameters), so a lookup costs O(path length) whatever the number of
routes. Parameters are typed: ``{id:int}``, ``{x:float}``, ``{u:uuid}``, ``{name}`` / ``{name:str}``
(one segment) and ``{rest:path}`` (the remainder, slashes included; last segment only).
"""

from __future__ import annotations

import inspect
import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from flowcoro.http.middleware import Middleware

__all__ = ["Route", "Router", "Match", "CONVERTERS", "METHODS", "WEBSOCKET"]

Handler = Callable[..., Any]
H = TypeVar("H", bound=Handler)

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT")
# The route kind of ``App.websocket`` routes: a pseudo-method no parser ever produces, so the
# HTTP lookup by method never matches it; the protocol looks it up on an Upgrade request.
WEBSOCKET = "WEBSOCKET"
_PARAM = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)(?::([a-z]+))?\}$")


def _to_int(text: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise ValueError(text)
    return int(text)


def _to_float(text: str) -> float:
    if not text or text.strip() != text or text.lower() in ("nan", "inf", "-inf", "+inf"):
        raise ValueError(text)
    return float(text)


def _to_str(text: str) -> str:
    if not text:
        raise ValueError(text)
    return text


CONVERTERS: dict[str, Callable[[str], Any]] = {
    "str": _to_str,
    "int": _to_int,
    "float": _to_float,
    "uuid": uuid.UUID,
    "path": _to_str,
}


class Route:
    """One path template and the methods it answers, with its own middleware and body limit."""

    __slots__ = (
        "direct",
        "endpoint",
        "handler",
        "has_params",
        "max_body_size",
        "methods",
        "middleware",
        "name",
        "path",
    )

    def __init__(
        self,
        path: str,
        handler: Handler,
        methods: Iterable[str] = ("GET",),
        *,
        name: str | None = None,
        middleware: Sequence[Middleware] = (),
        max_body_size: int | None = None,
    ) -> None:
        if not isinstance(path, str) or not path.startswith("/"):
            raise ValueError(f"path: {path!r} must be a string starting with '/'")
        if not (
            inspect.iscoroutinefunction(handler)
            or inspect.iscoroutinefunction(type(handler).__call__)
        ):
            raise TypeError(f"handler {handler!r} for {path!r} must be an async function")
        methods = tuple(m.upper() for m in methods)
        for m in methods:
            if m not in METHODS and m != WEBSOCKET:
                raise ValueError(f"methods: {m!r} is not an HTTP method ({', '.join(METHODS)})")
        if max_body_size is not None and max_body_size < 0:
            raise ValueError(f"max_body_size: must be >= 0, got {max_body_size!r}")
        _parse_template(path)
        self.path = path
        self.methods = methods
        self.handler = handler
        self.name = name or getattr(handler, "__name__", path)
        self.middleware = tuple(middleware)
        self.max_body_size = max_body_size
        self.endpoint: Callable[..., Any] | None = None
        self.direct = False  # endpoint is the bare handler (takes path parameters as keywords)
        self.has_params = "{" in path

    def with_prefix(self, prefix: str, middleware: Sequence[Middleware] = ()) -> Route:
        path = prefix.rstrip("/") + self.path if self.path != "/" or not prefix else prefix
        return Route(
            path or "/",
            self.handler,
            self.methods,
            name=self.name,
            middleware=(*middleware, *self.middleware),
            max_body_size=self.max_body_size,
        )

    def __repr__(self) -> str:
        return f"Route({self.path!r}, methods={list(self.methods)!r}, name={self.name!r})"


def _parse_template(path: str) -> list[tuple[str, str | None, Callable[[str], Any] | None]]:
    """Segments of a template as (static text, param name, converter)."""
    out: list[tuple[str, str | None, Callable[[str], Any] | None]] = []
    segments = path.split("/")[1:]
    seen: set[str] = set()
    for i, seg in enumerate(segments):
        if "{" in seg or "}" in seg:
            m = _PARAM.match(seg)
            if m is None:
                raise ValueError(f"path {path!r}: segment {seg!r} is not a '{{name[:type]}}'")
            name, kind = m.group(1), m.group(2) or "str"
            if kind not in CONVERTERS:
                raise ValueError(
                    f"path {path!r}: unknown parameter type {kind!r} "
                    f"(known: {', '.join(CONVERTERS)})"
                )
            if kind == "path" and i != len(segments) - 1:
                raise ValueError(f"path {path!r}: a ':path' parameter must be the last segment")
            if name in seen:
                raise ValueError(f"path {path!r}: parameter {name!r} appears twice")
            seen.add(name)
            out.append((kind, name, CONVERTERS[kind]))
        else:
            out.append((seg, None, None))
    return out


class Match:
    """The routes of one path template by method, plus the precomputed ``Allow`` value."""

    __slots__ = ("allow", "routes", "template")

    def __init__(self, template: str) -> None:
        self.routes: dict[str, Route] = {}
        self.allow = ""
        self.template = template

    def add(self, route: Route) -> None:
        for method in route.methods:
            if method in self.routes:
                raise ValueError(f"{method} {route.path!r} is registered twice")
            self.routes[method] = route
        if "GET" in self.routes and "HEAD" not in self.routes:
            self.routes["HEAD"] = self.routes["GET"]
        allowed = set(self.routes) | {"OPTIONS"}
        self.allow = ", ".join(m for m in METHODS if m in allowed)


class _Node:
    __slots__ = ("match", "params", "rest", "static")

    def __init__(self) -> None:
        self.static: dict[str, _Node] = {}
        self.params: list[tuple[str, str, Callable[[str], Any], _Node]] = []
        self.rest: tuple[str, Match] | None = None
        self.match: Match | None = None


class RouteDecorators:
    """``route`` / ``get`` / ``post`` / ... decorators over ``add_route``, shared by `Router`
    and the HTTP `App`."""

    def add_route(
        self,
        path: str,
        handler: Handler,
        methods: Iterable[str] = ("GET",),
        *,
        name: str | None = None,
        middleware: Sequence[Middleware] = (),
        max_body_size: int | None = None,
    ) -> Route:
        raise NotImplementedError

    def route(
        self,
        path: str,
        methods: Iterable[str] = ("GET",),
        *,
        name: str | None = None,
        middleware: Sequence[Middleware] = (),
        max_body_size: int | None = None,
    ) -> Callable[[H], H]:
        def decorate(handler: H) -> H:
            self.add_route(
                path,
                handler,
                methods,
                name=name,
                middleware=middleware,
                max_body_size=max_body_size,
            )
            return handler

        return decorate

    def get(self, path: str, **kw: Any) -> Callable[[H], H]:
        return self.route(path, ("GET",), **kw)

    def post(self, path: str, **kw: Any) -> Callable[[H], H]:
        return self.route(path, ("POST",), **kw)

    def put(self, path: str, **kw: Any) -> Callable[[H], H]:
        return self.route(path, ("PUT",), **kw)

    def patch(self, path: str, **kw: Any) -> Callable[[H], H]:
        return self.route(path, ("PATCH",), **kw)

    def delete(self, path: str, **kw: Any) -> Callable[[H], H]:
        return self.route(path, ("DELETE",), **kw)

    def head(self, path: str, **kw: Any) -> Callable[[H], H]:
        return self.route(path, ("HEAD",), **kw)

    def options(self, path: str, **kw: Any) -> Callable[[H], H]:
        return self.route(path, ("OPTIONS",), **kw)


class Router(RouteDecorators):
    """Routes, decorators to add them, and sub-routers mounted under a prefix."""

    def __init__(self, *, middleware: Sequence[Middleware] = ()) -> None:
        self.middleware: list[Middleware] = list(middleware)
        self._routes: list[Route] = []
        self._mounts: list[tuple[str, Router]] = []
        self._static: dict[str, Match] | None = None
        self._root: _Node | None = None

    # -- declaring routes ---------------------------------------------------------------

    def add_route(
        self,
        path: str,
        handler: Handler,
        methods: Iterable[str] = ("GET",),
        *,
        name: str | None = None,
        middleware: Sequence[Middleware] = (),
        max_body_size: int | None = None,
    ) -> Route:
        route = Route(
            path,
            handler,
            methods,
            name=name,
            middleware=middleware,
            max_body_size=max_body_size,
        )
        self._routes.append(route)
        self._static = None
        return route

    def mount(self, prefix: str, router: Router) -> None:
        """Serve ``router``'s routes under ``prefix`` (its middleware wraps only its routes).
        Routes added to it later are included too: mounts are flattened when compiled."""
        if not prefix.startswith("/") or (prefix.endswith("/") and prefix != "/"):
            raise ValueError(f"prefix: {prefix!r} must start with '/' and not end with '/'")
        if router is self:
            raise ValueError("a router cannot be mounted into itself")
        self._mounts.append((prefix if prefix != "/" else "", router))
        self._static = None

    def routes(self) -> list[Route]:
        """Every route, mounts flattened, with the mount's prefix and middleware applied."""
        out = list(self._routes)
        for prefix, sub in self._mounts:
            out.extend(r.with_prefix(prefix, sub.middleware) for r in sub.routes())
        return out

    # -- matching -------------------------------------------------------------------------

    def compile(self, routes: Iterable[Route] | None = None) -> None:
        static: dict[str, Match] = {}
        root = _Node()
        for route in self.routes() if routes is None else routes:
            if not route.has_params:
                static.setdefault(route.path, Match(route.path)).add(route)
                continue
            node = root
            for text, name, conv in _parse_template(route.path):
                if name is None:
                    node = node.static.setdefault(text, _Node())
                elif text == "path":
                    if node.rest is None:
                        node.rest = (name, Match(route.path))
                    elif node.rest[0] != name:
                        raise ValueError(f"{route.path!r} conflicts with {node.rest[1].template!r}")
                    node.rest[1].add(route)
                    break
                else:
                    assert conv is not None
                    for pname, kind, _, child in node.params:
                        if kind == text:
                            if pname != name:
                                raise ValueError(
                                    f"{route.path!r}: parameter {name!r} conflicts with "
                                    f"{pname!r} at the same position"
                                )
                            node = child
                            break
                    else:
                        child = _Node()
                        node.params.append((name, text, conv, child))
                        node = child
            else:
                if node.match is None:
                    node.match = Match(route.path)
                node.match.add(route)
        self._static = static
        self._root = root

    def lookup(self, path: str) -> tuple[Match, dict[str, Any] | None] | None:
        """The routes for ``path`` and its converted parameters, or None (404)."""
        static = self._static
        if static is None:
            self.compile()
            static = self._static
            assert static is not None
        found = static.get(path)
        if found is not None:
            return found, None
        root = self._root
        assert root is not None
        if not path.startswith("/"):
            return None
        params: dict[str, Any] = {}
        m = _walk(root, path.split("/"), 1, params, path)
        return (m, params) if m is not None else None


def _walk(node: _Node, segs: list[str], i: int, params: dict[str, Any], path: str) -> Match | None:
    if i == len(segs):
        return node.match
    seg = segs[i]
    child = node.static.get(seg)
    if child is not None:
        m = _walk(child, segs, i + 1, params, path)
        if m is not None:
            return m
    for name, _, conv, child in node.params:
        try:
            value = conv(seg)
        except ValueError:
            continue
        m = _walk(child, segs, i + 1, params, path)
        if m is not None:
            params[name] = value
            return m
    if node.rest is not None:
        rest = "/".join(segs[i:])
        if rest:
            params[node.rest[0]] = rest
            return node.rest[1]
    return None
