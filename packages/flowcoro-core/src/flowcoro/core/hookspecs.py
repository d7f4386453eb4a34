"""Hook specifications of project ``flowcoro``: the contract between the core and its plugins.

Plugins import `hookimpl` from `flowcoro.core`, never from pluggy. Every hook is called when the
app is assembled (wiring time) and returns objects that are then used directly: no hook is ever
called per request, per query or per message. A hook may return an awaitable; the core settles it
(`flowcoro.core.plugins.settle`). Each distribution adds its own specifications through
`flowcoro_add_hookspecs`, in a ``hookspecs.py`` of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from flowcoro.core.abc import Command, Component, PubSubBroker
    from flowcoro.core.app import App
    from flowcoro.core.health import HealthCheck
    from flowcoro.core.settings import Setting

PROJECT = "flowcoro"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec(historic=True)
def flowcoro_add_hookspecs(pm: pluggy.PluginManager) -> None:
    """Add a distribution's own hook specifications with ``pm.add_hookspecs(module)``."""


@hookspec
def flowcoro_settings() -> list[Setting]:
    """Return the settings this plugin reads (key, type, default, help)."""


@hookspec
def flowcoro_pubsub_brokers() -> list[type[PubSubBroker]]:
    """Return pub/sub broker classes, each with a unique ``PLUGIN_NAME``."""


@hookspec
def flowcoro_components(app: App) -> list[Component]:
    """Return components the app starts (in dependency order) and stops (in reverse)."""


@hookspec
def flowcoro_health_checks(app: App) -> list[HealthCheck]:
    """Return health checks to add to the app's registry."""


@hookspec
def flowcoro_startup(app: App) -> Any:
    """Run once after every component started; may return an awaitable."""


@hookspec
def flowcoro_shutdown(app: App) -> Any:
    """Run once before components stop; may return an awaitable."""


@hookspec
def flowcoro_cli_commands() -> list[Command]:
    """Return subcommands for the ``flowcoro`` command line."""
