"""Hook specifications and the plugin: middleware, routes and observers from other plugins."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from _http_helpers import serving

from flowcoro.core import hookimpl
from flowcoro.core.plugins import Plugins
from flowcoro.http import App, CallNext, Request, Response, Route
from flowcoro.http import plugin as http_plugin


class Contrib:
    def __init__(self) -> None:
        self.finished: list[tuple[str | None, int]] = []

    @hookimpl
    def flowcoro_http_middleware(self, app: App) -> list[Any]:
        async def tag(request: Request, call_next: CallNext) -> Response:
            response = await call_next(request)
            response.set_header("x-plugin", app.name)
            return response

        return [tag]

    @hookimpl
    def flowcoro_http_routes(self, app: App) -> list[Route]:
        async def metrics(request: Request) -> str:
            return "metrics 1"

        return [Route("/metrics", metrics)]

    @hookimpl
    def flowcoro_http_observers(self, app: App) -> list[Any]:
        contrib = self

        class Obs:
            def request_started(self, request: Request) -> None:
                pass

            def request_finished(
                self, request: Request, route: str | None, status: int, duration: float
            ) -> None:
                contrib.finished.append((route, status))

        return [Obs()]


async def test_plugin_contributions() -> None:
    plugins = Plugins(only=["http", "net"])
    contrib = Contrib()
    plugins.register(contrib, name="contrib", distribution="tests")
    app = App("plugged", plugins=plugins, env={})

    @app.get("/")
    async def index(request: Request) -> str:
        return "index"

    async with (
        serving(app) as (_, port),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
    ):
        r = await client.get("/metrics")
        assert (r.text, r.headers["x-plugin"]) == ("metrics 1", "plugged")
        assert (await client.get("/")).headers["x-plugin"] == "plugged"
    assert contrib.finished == [("/metrics", 200), ("/", 200)]


async def test_bad_route_from_plugin() -> None:
    class Bad:
        @hookimpl
        def flowcoro_http_routes(self, app: App) -> list[Any]:
            return ["/not-a-route"]

    plugins = Plugins(only=["http"])
    plugins.register(Bad(), name="bad", distribution="tests")
    app = App("bad", plugins=plugins, env={})
    with pytest.raises(TypeError, match="not a Route"):
        app.wire()


def test_settings_and_hooks_registered() -> None:
    plugins = Plugins(only=["http"])
    keys = {s.key for group in plugins.hook.flowcoro_settings() for s in group}
    assert {"http_host", "http_port", "http_max_body_size", "http_access_log"} <= keys
    for name in ("flowcoro_http_middleware", "flowcoro_http_routes", "flowcoro_http_observers"):
        assert hasattr(plugins.hook, name)
    assert [c.name for c in http_plugin.flowcoro_cli_commands()] == ["serve"]


def test_app_without_http_plugin_still_works() -> None:
    app = App("bare", plugins=Plugins(autoload=False), env={})
    assert app.wire().observers == ()
    assert app.access_log is False
