from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from flowcoro.core import App, Component, ConfigError, HealthCheck, LifecycleError, hookimpl
from flowcoro.core.plugins import Plugins
from flowcoro.core.pubsub import MemoryBroker


class Recorder(Component):
    def __init__(
        self,
        name: str,
        log: list[str],
        *,
        depends_on: tuple[str, ...] = (),
        fail_start: bool = False,
        fail_stop: bool = False,
        hang: str = "",
    ) -> None:
        self.name = name
        self.log = log
        self.depends_on = depends_on
        self.fail_start = fail_start
        self.fail_stop = fail_stop
        self.hang = hang
        self.start_timeout = 0.1
        self.stop_timeout = 0.1

    async def start(self, app: App) -> None:
        if self.hang == "start":
            await asyncio.sleep(10)
        if self.fail_start:
            raise RuntimeError("no disk")
        self.log.append(f"start {self.name}")

    async def stop(self) -> None:
        if self.hang == "stop":
            await asyncio.sleep(10)
        self.log.append(f"stop {self.name}")
        if self.fail_stop:
            raise RuntimeError("stuck")


def hermetic(**settings: Any) -> App:
    return App("test", plugins=Plugins(autoload=False), env={}, **settings)


async def test_components_start_in_dependency_order_and_stop_in_reverse() -> None:
    log: list[str] = []
    app = hermetic()
    app.add_component(Recorder("http", log, depends_on=("db", "cache")))
    app.add_component(Recorder("db", log))
    app.add_component(Recorder("cache", log, depends_on=("db",)))
    async with app:
        assert app.started
        assert log == ["start db", "start cache", "start http"]
    assert log[3:] == ["stop http", "stop cache", "stop db"]
    assert not app.started
    assert app.draining


async def test_failed_start_stops_what_started_and_names_the_component() -> None:
    log: list[str] = []
    app = hermetic()
    app.add_component(Recorder("db", log))
    app.add_component(Recorder("http", log, depends_on=("db",), fail_start=True))
    with pytest.raises(LifecycleError) as info:
        await app.start()
    assert info.value.component == "http"
    assert "RuntimeError: no disk" in str(info.value)
    assert log == ["start db", "stop http", "stop db"]
    assert not app.started


async def test_start_timeout_names_the_component_and_limit() -> None:
    app = hermetic()
    app.add_component(Recorder("slow", [], hang="start"))
    with pytest.raises(LifecycleError, match=r"'slow' failed to start: did not start within 0.1s"):
        await app.start()


async def test_stop_timeouts_and_failures_do_not_stop_the_others() -> None:
    log: list[str] = []
    app = hermetic()
    app.add_component(Recorder("a", log))
    app.add_component(Recorder("b", log, fail_stop=True))
    app.add_component(Recorder("c", log, hang="stop"))
    await app.start()
    with pytest.raises(ExceptionGroup) as info:
        await app.stop()
    messages = sorted(str(e) for e in info.value.exceptions)
    assert "did not stop within 0.1s" in messages[1] or "did not stop within 0.1s" in messages[0]
    assert any("'b' failed to stop: RuntimeError: stuck" in m for m in messages)
    assert log[-2:] == ["stop b", "stop a"]
    await app.stop()  # already stopped: nothing to do


async def test_dependency_errors() -> None:
    app = hermetic()
    app.add_component(Recorder("a", [], depends_on=("b",)))
    app.add_component(Recorder("b", [], depends_on=("a",)))
    with pytest.raises(LifecycleError, match="dependency cycle: a -> b -> a"):
        await app.start()
    app = hermetic()
    app.add_component(Recorder("a", [], depends_on=("ghost",)))
    with pytest.raises(LifecycleError, match="unknown component 'ghost'"):
        await app.start()


async def test_component_rules() -> None:
    app = hermetic()
    app.add_component(Recorder("a", []))
    with pytest.raises(ValueError, match="already registered"):
        app.add_component(Recorder("a", []))
    with pytest.raises(ValueError, match="has no name"):
        app.add_component(Recorder("", []))
    async with app:
        with pytest.raises(RuntimeError, match="already started"):
            app.add_component(Recorder("b", []))
        with pytest.raises(RuntimeError, match="already started"):
            await app.start()
    assert [c.name for c in app.components] == ["a"]


class Checked(Recorder):
    healthy = True

    async def health_check(self) -> None:
        if not self.healthy:
            raise ConnectionError("gone")


async def test_component_health_checks_are_registered_and_removed() -> None:
    app = hermetic()
    db = Checked("db", [])
    app.add_component(db)
    async with app:
        assert (await app.health.run()).ok
        db.healthy = False
        report = await app.health.run()
        assert not report.ok
        assert report.checks[0].detail == "ConnectionError: gone"
    assert app.health.names() == []


async def test_plugins_contribute_components_checks_and_lifecycle() -> None:
    log: list[str] = []

    class Plugin:
        @hookimpl
        def flowcoro_components(self, app: App) -> list[Component]:
            return [Recorder("from-plugin", log)]

        @hookimpl
        def flowcoro_health_checks(self, app: App) -> list[HealthCheck]:
            async def ok() -> None:
                return None

            return [HealthCheck("plugin-check", ok)]

        @hookimpl
        def flowcoro_startup(self, app: App) -> Any:
            async def later() -> None:
                log.append("startup hook")

            return later()

        @hookimpl
        def flowcoro_shutdown(self, app: App) -> None:
            log.append(f"shutdown hook draining={app.draining}")

    host = Plugins(autoload=False)
    host.register(Plugin(), name="p", distribution="p-dist")
    app = App(plugins=host, env={})

    @app.on_startup
    async def started() -> None:
        log.append("on_startup")

    @app.on_shutdown
    async def stopping() -> None:
        log.append("on_shutdown")

    async with app:
        assert app.health.names() == ["plugin-check"]
    assert log == [
        "start from-plugin",
        "startup hook",
        "on_startup",
        "on_shutdown",
        "shutdown hook draining=True",
        "stop from-plugin",
    ]


async def test_failing_shutdown_callback_is_reported_after_everything_stopped() -> None:
    log: list[str] = []
    app = hermetic()
    app.add_component(Recorder("a", log))

    @app.on_shutdown
    async def broken() -> None:
        raise RuntimeError("flush failed")

    await app.start()
    with pytest.raises(ExceptionGroup) as info:
        await app.stop()
    assert log == ["start a", "stop a"]
    assert isinstance(info.value.exceptions[0], RuntimeError)


async def test_bad_health_check_from_plugin_is_refused() -> None:
    class Plugin:
        @hookimpl
        def flowcoro_health_checks(self, app: App) -> list[Any]:
            return ["not a check"]

    host = Plugins(autoload=False)
    host.register(Plugin(), name="p")
    with pytest.raises(TypeError, match="not a HealthCheck"):
        await App(plugins=host, env={}).start()


def test_begin_shutdown_tells_listeners_once() -> None:
    app = hermetic()
    calls: list[str] = []
    app.on_draining(lambda: calls.append("a"))

    @app.on_draining
    def broken() -> None:
        raise RuntimeError("listener bug")

    app.on_draining(lambda: calls.append("b"))
    app.begin_shutdown()
    app.begin_shutdown()
    assert app.draining
    assert calls == ["a", "b"]


async def test_pubsub_follows_the_setting() -> None:
    app = hermetic()
    broker = app.pubsub()
    assert isinstance(broker, MemoryBroker)
    assert app.pubsub() is broker
    assert app.pubsub("memory") is broker
    with pytest.raises(ConfigError, match="no broker named 'kafka'; registered: memory"):
        hermetic(pubsub_broker="kafka").pubsub()
    # auto picks redis only when it is registered and configured; here it is not registered
    assert isinstance(hermetic(pubsub_broker="auto").pubsub(), MemoryBroker)
    await app.start()
    await app.stop()


def test_settings_come_from_plugins_env_file_and_kwargs(tmp_path: Path) -> None:
    f = tmp_path / "app.toml"
    f.write_text("shutdown_timeout = 5\n")
    app = App(plugins=Plugins(autoload=False), env={}, settings_file=f)
    assert app.settings["shutdown_timeout"] == 5.0
    app = App(plugins=Plugins(autoload=False), env={"FLOWCORO_SHUTDOWN_TIMEOUT": "7"})
    assert app.settings["shutdown_timeout"] == 7.0
    with pytest.raises(ConfigError) as info:
        App(plugins=Plugins(autoload=False), env={"FLOWCORO_SHUTDOWN_TIMEOUT": "soon"})
    assert info.value.key == "shutdown_timeout"


def test_plugin_switches_given_to_the_app(tmp_path: Path) -> None:
    app = App(env={}, plugins_autoload=False, plugins_block=["nothing"])
    assert [i.name for i in app.plugins.info()] == ["core"]
    f = tmp_path / "app.toml"
    f.write_text("plugins_autoload = false\n")
    app = App(env={}, settings_file=f)
    assert [i.name for i in app.plugins.info()] == ["core"]
    assert app.settings["plugins_autoload"] is False
