"""``flowcoro serve module:app``: serve an `App` with flowcoro-net's `run_server`.

One process, or ``--workers N`` forked workers each with its own ``SO_REUSEPORT`` socket. On
SIGTERM/SIGINT the app turns to draining (readiness fails), the server stops accepting, in-flight
requests finish within ``--drain-timeout`` seconds, idle keep-alive connections close at once,
then the app stops.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import sys
from typing import TYPE_CHECKING, Any

from flowcoro.core.abc import Command
from flowcoro.core.errors import FlowCoroError

if TYPE_CHECKING:
    from flowcoro.http.app import App

__all__ = ["ServeCommand", "load_app"]


def load_app(target: str, interface: str = "auto") -> App:
    """``package.module:attribute`` -> the `App` it names (the current directory is importable).
    An ASGI 3 application (detected, or forced with ``interface="asgi"``) is wrapped with
    `flowcoro.http.asgi.from_asgi`."""
    from flowcoro.http.app import App
    from flowcoro.http.asgi import from_asgi, is_asgi_app

    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise FlowCoroError(f"expected MODULE:ATTRIBUTE (like examples.hello:app), got {target!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise FlowCoroError(f"cannot import {module_name!r}: {exc}") from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise FlowCoroError(f"module {module_name!r} has no attribute {attr!r}") from None
    # ASGI integration point: an ASGI callable is served through the ASGI bridge.
    if interface == "asgi" or (interface == "auto" and is_asgi_app(obj)):
        if not callable(obj) or isinstance(obj, App):
            raise FlowCoroError(f"{target!r} is {type(obj).__name__}, not an ASGI application")
        wrapped: App = from_asgi(obj, name=module_name)
        return wrapped
    if callable(obj) and not isinstance(obj, App):
        obj = obj()  # a factory: ``module:build_app``
    if not isinstance(obj, App):
        raise FlowCoroError(f"{target!r} is {type(obj).__name__}, not a flowcoro.http.App")
    return obj


class ServeCommand(Command):
    name = "serve"
    help = "serve an HTTP app (MODULE:ATTRIBUTE) until SIGTERM, then drain gracefully"

    def configure(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("app", help="the App to serve, as module:attribute (or a factory)")
        parser.add_argument("--host", default=None, help="address (default: setting http_host)")
        parser.add_argument("--port", type=int, default=None, help="TCP port (setting http_port)")
        parser.add_argument("--uds", default=None, help="listen on this Unix socket instead")
        parser.add_argument("--workers", type=int, default=1, help="processes (SO_REUSEPORT)")
        parser.add_argument(
            "--drain-timeout",
            type=float,
            default=None,
            help="seconds in-flight requests get on shutdown (setting http_drain_timeout)",
        )
        parser.add_argument("--access-log", action="store_true", help="log every request")
        parser.add_argument("--loop", choices=["auto", "uvloop", "asyncio"], default="auto")
        parser.add_argument(
            "--interface",
            choices=["auto", "flowcoro", "asgi"],
            default="auto",
            help="what MODULE:ATTRIBUTE is: auto-detected, a flowcoro App, or an ASGI 3 app",
        )

    def run(self, args: argparse.Namespace) -> int:
        from flowcoro.net import Limits
        from flowcoro.net.workers import run_server

        app = load_app(args.app, getattr(args, "interface", "auto"))
        if args.access_log:
            app.access_log = True
        settings = app.settings
        host = args.host if args.host is not None else settings.get("http_host", "127.0.0.1")
        port = args.port if args.port is not None else settings.get("http_port", 8000)
        if args.uds is not None and args.port is None:
            port = None
        drain = args.drain_timeout
        if drain is None:
            drain = float(settings.get("http_drain_timeout", 30.0))

        async def build() -> Any:
            await app.start()
            factory = app.protocol_factory()
            # Everything alive now (modules, the app, its routes) lives as long as the process:
            # keep it out of the cyclic collector's scans so collections stay short (p99).
            gc.collect()
            gc.freeze()
            return factory

        async def stopped(stats: Any) -> None:
            await app.stop()

        return run_server(
            build,
            workers=args.workers,
            host=host if port is not None else None,
            port=port,
            uds=args.uds,
            drain_timeout=drain,
            # Keep-alive, header and body deadlines are the HTTP layer's (HTTPLimits).
            limits=Limits(idle_timeout=None, drain_timeout=drain),
            on_shutdown_begin=app.begin_shutdown,
            on_stopped=stopped,
            loop=args.loop,
        )
