"""flowcoro-http's hook implementations: its hook specifications, settings and CLI command."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

from flowcoro.core import hookimpl

if TYPE_CHECKING:
    from flowcoro.core.abc import Command
    from flowcoro.core.settings import Setting


@hookimpl
def flowcoro_add_hookspecs(pm: pluggy.PluginManager) -> None:
    import flowcoro.http.hookspecs

    pm.add_hookspecs(flowcoro.http.hookspecs)


@hookimpl
def flowcoro_settings() -> list[Setting]:
    from flowcoro.http.app import http_settings

    return http_settings()


@hookimpl
def flowcoro_cli_commands() -> list[Command]:
    from flowcoro.http.cli import ServeCommand

    return [ServeCommand()]
