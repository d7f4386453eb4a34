"""`App`: settings, plugins, components started in dependency order, health, and shutdown state.

Wiring happens once, in `start()`: plugins contribute settings, components, health checks and
lifecycle callbacks through hooks, and the app then calls those objects directly.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from flowcoro.core.abc import Component, PubSubBroker
from flowcoro.core.errors import ConfigError, FlowCoroError
from flowcoro.core.health import HealthCheck, HealthRegistry
from flowcoro.core.plugins import Plugins, _switches, flatten, get_plugins, settle
from flowcoro.core.settings import Settings, load_settings, read_settings_file

__all__ = ["App", "LifecycleError"]

log = logging.getLogger("flowcoro.app")

Callback = Callable[[], Awaitable[Any]]
C = TypeVar("C", bound=Callback)

_BOOT_KEYS = ("plugins", "plugins_block", "plugins_autoload", "plugins_trace", "plugins_on_error")


class LifecycleError(FlowCoroError):
    """A component failed (or timed out) while starting or stopping; `component` names it."""

    def __init__(self, component: str, phase: str, message: str) -> None:
        super().__init__(f"component {component!r} failed to {phase}: {message}")
        self.component = component
        self.phase = phase


class App:
    """A FlowCoro application: the unit that is configured, started and stopped."""

    def __init__(
        self,
        name: str = "flowcoro",
        *,
        settings_file: str | Path | None = None,
        env: Mapping[str, str] | None = None,
        plugins: Plugins | None = None,
        **settings: Any,
    ) -> None:
        self.name = name
        env = dict(os.environ if env is None else env)
        self.plugins = (
            plugins if plugins is not None else _plugins_for(env, settings, settings_file)
        )
        specs = flatten(self.plugins.hook.flowcoro_settings())
        self.settings: Settings = load_settings(
            specs, kwargs=settings, env=env, settings_file=settings_file
        )
        self.health = HealthRegistry()
        self.draining = False
        self.started = False
        self._components: dict[str, Component] = {}
        self._running: list[Component] = []
        self._on_startup: list[Callback] = []
        self._on_shutdown: list[Callback] = []
        self._on_draining: list[Callable[[], None]] = []
        self._brokers: dict[str, PubSubBroker] = {}

    # -- wiring ---------------------------------------------------------------------------

    def add_component(self, component: Component) -> Component:
        name = component.name
        if not name:
            raise ValueError(f"component {component!r} has no name")
        if name in self._components:
            raise ValueError(f"a component named {name!r} is already registered")
        if self.started:
            raise RuntimeError(f"cannot add component {name!r}: the app is already started")
        self._components[name] = component
        return component

    @property
    def components(self) -> list[Component]:
        return list(self._components.values())

    def on_startup(self, fn: C) -> C:
        self._on_startup.append(fn)
        return fn

    def on_shutdown(self, fn: C) -> C:
        self._on_shutdown.append(fn)
        return fn

    def on_draining(self, fn: Callable[[], None]) -> Callable[[], None]:
        """Call ``fn`` (synchronously) when `begin_shutdown` flips the app to draining."""
        self._on_draining.append(fn)
        return fn

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        if self.started:
            raise RuntimeError(f"app {self.name!r} is already started")
        for component in flatten(self.plugins.hook.flowcoro_components(app=self)):
            self.add_component(component)
        for check in flatten(self.plugins.hook.flowcoro_health_checks(app=self)):
            if not isinstance(check, HealthCheck):
                raise TypeError(f"flowcoro_health_checks returned {check!r}, not a HealthCheck")
            self.health.add(check)
        self.started = True
        self.draining = False
        try:
            for component in _dependency_order(self._components):
                await self._start_component(component)
            await settle(self.plugins.hook.flowcoro_startup(app=self))
            for callback in self._on_startup:
                await callback()
        except BaseException:
            await self._stop_components()
            self.started = False
            raise

    async def _start_component(self, component: Component) -> None:
        name = component.name
        try:
            async with asyncio.timeout(component.start_timeout):
                await component.start(self)
        except TimeoutError as exc:
            await _stop_quietly(component)
            raise LifecycleError(
                name, "start", f"did not start within {component.start_timeout:g}s"
            ) from exc
        except Exception as exc:
            await _stop_quietly(component)
            raise LifecycleError(name, "start", f"{type(exc).__name__}: {exc}") from exc
        self._running.append(component)
        check = getattr(component, "health_check", None)
        if callable(check) and name not in self.health.names():
            self.health.register(name, check)
        log.debug("component %s started", name)

    async def stop(self) -> None:
        """Run shutdown callbacks, then stop components in reverse order, each bounded by its
        ``stop_timeout``. Every component gets its turn; failures are raised together at the
        end as an `ExceptionGroup` of `LifecycleError`."""
        if not self.started:
            return
        self.begin_shutdown()
        errors: list[Exception] = []
        for callback in reversed(self._on_shutdown):
            try:
                await callback()
            except Exception as exc:
                log.exception("shutdown callback %r failed", callback)
                errors.append(exc)
        try:
            await settle(self.plugins.hook.flowcoro_shutdown(app=self))
        except Exception as exc:
            log.exception("flowcoro_shutdown hook failed")
            errors.append(exc)
        for broker in self._brokers.values():
            await broker.aclose()
        self._brokers.clear()
        errors += await self._stop_components()
        self.started = False
        if errors:
            raise ExceptionGroup(f"app {self.name!r} did not stop cleanly", errors)

    async def _stop_components(self) -> list[Exception]:
        errors: list[Exception] = []
        while self._running:
            component = self._running.pop()
            self.health.unregister(component.name)
            try:
                async with asyncio.timeout(component.stop_timeout):
                    await component.stop()
            except TimeoutError as exc:
                err = LifecycleError(
                    component.name, "stop", f"did not stop within {component.stop_timeout:g}s"
                )
                err.__cause__ = exc
                log.error("%s", err)
                errors.append(err)
            except Exception as exc:
                err = LifecycleError(component.name, "stop", f"{type(exc).__name__}: {exc}")
                err.__cause__ = exc
                log.error("%s", err)
                errors.append(err)
        return errors

    def begin_shutdown(self) -> None:
        """Flip to draining (readiness fails from now on) and tell the listeners, once."""
        if self.draining:
            return
        self.draining = True
        for listener in self._on_draining:
            try:
                listener()
            except Exception:
                log.exception("draining listener %r failed", listener)

    async def __aenter__(self) -> App:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- services between distributions ---------------------------------------------------

    def pubsub(self, name: str | None = None) -> PubSubBroker:
        """The pub/sub broker the ``pubsub_broker`` setting names (one instance per app)."""
        brokers = {
            cls.PLUGIN_NAME: cls for cls in flatten(self.plugins.hook.flowcoro_pubsub_brokers())
        }
        choice = name or self.settings.get("pubsub_broker") or "auto"
        if choice == "auto":
            choice = "redis" if "redis" in brokers and self.settings.get("redis_url") else "memory"
        if choice not in brokers:
            known = ", ".join(sorted(brokers)) or "none"
            raise ConfigError("pubsub_broker", f"no broker named {choice!r}; registered: {known}")
        if choice not in self._brokers:
            self._brokers[choice] = brokers[choice].from_settings(self.settings)
        return self._brokers[choice]


def _plugins_for(
    env: Mapping[str, str], kwargs: dict[str, Any], settings_file: str | Path | None
) -> Plugins:
    """The process-wide host, unless the plugin switches were given to this app directly."""
    boot = {k: kwargs.pop(k) for k in _BOOT_KEYS if k in kwargs}
    if settings_file is not None:
        from_file = read_settings_file(settings_file)
        boot = {**{k: from_file[k] for k in _BOOT_KEYS if k in from_file}, **boot}
    if not boot:
        return get_plugins()
    merged = dict(env)
    for key, value in boot.items():
        text = ",".join(value) if isinstance(value, list | tuple) else str(value)
        merged["FLOWCORO_" + key.upper()] = text
    return Plugins(**_switches(merged))


def _dependency_order(components: Mapping[str, Component]) -> list[Component]:
    """Components so that each comes after everything it depends on (stable otherwise)."""
    order: list[Component] = []
    state: dict[str, str] = {}

    def visit(name: str, path: tuple[str, ...]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            cycle = " -> ".join((*path[path.index(name) :], name))
            raise LifecycleError(name, "start", f"dependency cycle: {cycle}")
        state[name] = "visiting"
        for dep in components[name].depends_on:
            if dep not in components:
                raise LifecycleError(name, "start", f"depends on unknown component {dep!r}")
            visit(dep, (*path, name))
        state[name] = "done"
        order.append(components[name])

    for name in components:
        visit(name, ())
    return order


async def _stop_quietly(component: Component) -> None:
    try:
        async with asyncio.timeout(component.stop_timeout):
            await component.stop()
    except Exception:
        log.exception("component %s failed to stop after a failed start", component.name)
