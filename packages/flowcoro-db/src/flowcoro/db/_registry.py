"""Find the driver for a URL scheme among the drivers plugins register (``flowcoro_db_drivers``).

Built-in drivers register through the same hook as third-party ones. The hook is called when a
`Database` is built (wiring time), never per query.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from flowcoro.db.abc import Driver

__all__ = ["driver_for", "drivers", "plugin_manager"]

_fallback: pluggy.PluginManager | None = None


def _host_pm() -> pluggy.PluginManager | None:
    try:
        plugins: Any = importlib.import_module("flowcoro.core.plugins")
    except ImportError:
        return None
    pm: pluggy.PluginManager = plugins.get_plugins().pm
    return pm


def plugin_manager() -> pluggy.PluginManager:
    """The plugin manager drivers are looked up in: the core's default host, or (until the core
    has one) a private manager holding flowcoro-db's own plugin."""
    global _fallback
    pm = _host_pm()
    if pm is None:
        if _fallback is None:
            import flowcoro.core.hookspecs
            import flowcoro.db.plugin

            _fallback = pluggy.PluginManager(flowcoro.core.hookspecs.PROJECT)
            _fallback.add_hookspecs(flowcoro.core.hookspecs)
            _fallback.register(flowcoro.db.plugin, name="flowcoro.db")
            _fallback.hook.flowcoro_add_hookspecs.call_historic(kwargs={"pm": _fallback})
        pm = _fallback
    if not hasattr(pm.hook, "flowcoro_db_drivers"):
        import flowcoro.db.hookspecs

        pm.add_hookspecs(flowcoro.db.hookspecs)
    return pm


def drivers() -> dict[str, type[Driver]]:
    """Every registered driver class by URL scheme (a later registration wins a clash)."""
    found: dict[str, type[Driver]] = {}
    for group in reversed(plugin_manager().hook.flowcoro_db_drivers()):
        for cls in group or ():
            for scheme in cls.SCHEMES:
                found[scheme.lower()] = cls
    return found


def driver_for(scheme: str) -> type[Driver]:
    known = drivers()
    try:
        return known[scheme.lower()]
    except KeyError:
        raise ValueError(
            f"url: no database driver for scheme {scheme!r}; registered: "
            + (", ".join(sorted(known)) or "none")
        ) from None
