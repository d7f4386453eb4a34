"""The plugin host: a pluggy manager for project ``flowcoro``, fed by the ``flowcoro`` entry points.

Built lazily (`get_plugins()`), once per process, from these switches (keyword arguments, or the
``FLOWCORO_PLUGINS*`` environment variables):

- ``autoload`` (``FLOWCORO_PLUGINS_AUTOLOAD=0``): load no entry point; only core's built-ins and
  what is registered by hand (hermetic tests).
- ``only`` (``FLOWCORO_PLUGINS=http,db``): load only these entry points (by entry-point name or
  distribution name).
- ``block`` (``FLOWCORO_PLUGINS_BLOCK=...``): never load these.
- ``trace`` (``FLOWCORO_PLUGINS_TRACE=1``): log every hook call and its result at DEBUG level.
- ``on_error`` (``FLOWCORO_PLUGINS_ON_ERROR=skip``): a plugin that fails to import or validate is
  skipped with a warning instead of stopping the app (the default, ``raise``).

Hooks are called at wiring time only; see `flowcoro.core.hookspecs`.
"""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
import inspect
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal

import pluggy

from flowcoro.core import hookspecs
from flowcoro.core.errors import ConfigError, PluginError
from flowcoro.core.settings import _FALSE, _TRUE

__all__ = [
    "ENTRY_POINT_GROUP",
    "PluginInfo",
    "Plugins",
    "flatten",
    "get_plugins",
    "set_plugins",
    "settle",
]

ENTRY_POINT_GROUP = "flowcoro"
BUILTIN = "flowcoro.core.plugin"

log = logging.getLogger("flowcoro.plugins")

OnError = Literal["raise", "skip"]


@dataclass(frozen=True, slots=True)
class PluginInfo:
    """What `flowcoro plugins` shows for one registered plugin."""

    name: str
    distribution: str
    version: str
    hooks: tuple[str, ...]


class Plugins:
    """The pluggy manager plus where each plugin came from and what was skipped."""

    def __init__(
        self,
        *,
        autoload: bool = True,
        only: Iterable[str] | None = None,
        block: Iterable[str] = (),
        trace: bool = False,
        on_error: OnError = "raise",
    ) -> None:
        if on_error not in ("raise", "skip"):
            raise ConfigError("plugins_on_error", f"expected 'raise' or 'skip', got {on_error!r}")
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.on_error: OnError = on_error
        self.skipped: list[PluginError] = []
        self._origin: dict[str, tuple[str, str]] = {}
        # Historic: a plugin registered later still gets to add its own specifications.
        self.pm.hook.flowcoro_add_hookspecs.call_historic(kwargs={"pm": self.pm})
        builtin = importlib.import_module(BUILTIN)
        self.register(builtin, name="core", distribution="flowcoro-core")
        if autoload:
            self._load_entry_points(set(only) if only is not None else None, set(block))
        self._check_pending()
        if trace:
            self.pm.trace.root.setwriter(lambda text: log.debug("hook %s", text.rstrip()))
            self.pm.enable_tracing()

    @property
    def hook(self) -> pluggy.HookRelay:
        return self.pm.hook

    def register(
        self, plugin: object, *, name: str | None = None, distribution: str | None = None
    ) -> str:
        """Register a plugin object (module or instance) by hand; returns its name."""
        dist = distribution or _distribution_of(plugin)
        try:
            registered = self.pm.register(plugin, name=name)
        except (pluggy.PluginValidationError, ValueError) as exc:
            raise PluginError(dist, f"invalid plugin {name or plugin!r}: {exc}") from exc
        assert registered is not None  # pluggy returns None only for blocked names
        self._origin[registered] = (dist, _version_of(dist))
        return registered

    def info(self) -> list[PluginInfo]:
        """Every registered plugin with its distribution, version and implemented hooks."""
        result = []
        for name, plugin in self.pm.list_name_plugin():
            dist, version = self._origin.get(name, (_distribution_of(plugin), ""))
            callers = self.pm.get_hookcallers(plugin) or []
            hooks = tuple(sorted(caller.name for caller in callers))
            result.append(PluginInfo(name, dist, version, hooks))
        return result

    def _load_entry_points(self, only: set[str] | None, block: set[str]) -> None:
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist is not None else "unknown"
            names = {ep.name, dist}
            if ep.value == BUILTIN or names & block:
                continue
            if only is not None and not names & only:
                continue
            if self.pm.has_plugin(ep.name):
                continue
            try:
                try:
                    plugin = ep.load()
                except Exception as exc:
                    raise PluginError(
                        dist, f"entry point {ep.name!r} = {ep.value!r} failed to import: {exc!r}"
                    ) from exc
                self.register(plugin, name=ep.name, distribution=dist)
            except PluginError as err:
                self._fail(err)

    def _check_pending(self) -> None:
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            name = self.pm.get_name(exc.plugin) or repr(exc.plugin)
            dist = self._origin.get(name, (_distribution_of(exc.plugin), ""))[0]
            err = PluginError(dist, f"plugin {name!r}: {exc}")
            err.__cause__ = exc
            self.pm.unregister(exc.plugin)
            self._fail(err)
            self._check_pending()

    def _fail(self, err: PluginError) -> None:
        if self.on_error == "raise":
            raise err
        log.warning("skipping %s", err)
        self.skipped.append(err)


def _distribution_of(plugin: object) -> str:
    module = plugin if isinstance(plugin, ModuleType) else inspect.getmodule(plugin)
    top = (module.__name__ if module else "").split(".")
    if len(top) >= 2 and top[0] == "flowcoro":
        return f"flowcoro-{top[1]}"
    return top[0] or "unknown"


def _version_of(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return ""


def _switches(env: Mapping[str, str]) -> dict[str, Any]:
    def names(key: str) -> list[str]:
        return [n.strip() for n in env.get(key, "").split(",") if n.strip()]

    autoload = env.get("FLOWCORO_PLUGINS_AUTOLOAD", "1").strip().lower() or "1"
    if autoload not in _TRUE | _FALSE:
        raise ConfigError("plugins_autoload", f"expected a boolean, got {autoload!r}")
    on_error = env.get("FLOWCORO_PLUGINS_ON_ERROR", "raise").strip().lower() or "raise"
    if on_error not in ("raise", "skip"):
        raise ConfigError("plugins_on_error", f"expected 'raise' or 'skip', got {on_error!r}")
    return {
        "autoload": autoload in _TRUE,
        "only": names("FLOWCORO_PLUGINS") or None,
        "block": names("FLOWCORO_PLUGINS_BLOCK"),
        "trace": env.get("FLOWCORO_PLUGINS_TRACE", "").strip().lower() in _TRUE,
        "on_error": on_error,
    }


_default: Plugins | None = None


def get_plugins() -> Plugins:
    """The process-wide plugin host, built on first use from the environment's switches."""
    global _default
    if _default is None:
        _default = Plugins(**_switches(os.environ))
    return _default


def set_plugins(plugins: Plugins | None) -> None:
    """Replace the process-wide host (``None``: rebuild on next use). For tests and embedders."""
    global _default
    _default = plugins


def flatten(results: Iterable[Any]) -> list[Any]:
    """Hook results are one value per implementation; list-returning hooks become one list."""
    out: list[Any] = []
    for item in results:
        if item is None:
            continue
        if isinstance(item, list | tuple):
            out.extend(item)
        else:
            out.append(item)
    return out


async def settle(results: Iterable[Any]) -> list[Any]:
    """Await the awaitables among hook results (pluggy never awaits), in order."""
    out = []
    for item in results:
        if inspect.isawaitable(item):
            item = await item
        out.append(item)
    return out
