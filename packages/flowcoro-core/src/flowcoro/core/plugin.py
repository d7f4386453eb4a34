"""Core's own hook implementations: built-in behaviour registers like any third-party plugin."""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import json
from pathlib import Path

from flowcoro.core.abc import Command, PubSubBroker
from flowcoro.core.hookspecs import hookimpl
from flowcoro.core.pubsub import DEFAULT_BACKLOG, MemoryBroker
from flowcoro.core.settings import Setting


@hookimpl
def flowcoro_settings() -> list[Setting]:
    return [
        Setting("plugins", list, None, "load only these plugins (entry-point or distribution)"),
        Setting("plugins_block", list, [], "never load these plugins"),
        Setting("plugins_autoload", bool, True, "load plugins from the 'flowcoro' entry points"),
        Setting("plugins_trace", bool, False, "log every hook call at DEBUG level"),
        Setting(
            "plugins_on_error",
            str,
            "raise",
            "a broken plugin stops the app or is skipped",
            choices=("raise", "skip"),
        ),
        Setting(
            "loop",
            str,
            "auto",
            "event loop: uvloop when installed, else asyncio",
            choices=("auto", "uvloop", "asyncio"),
        ),
        Setting("shutdown_timeout", float, 30.0, "seconds to drain on shutdown", minimum=0),
        Setting("pubsub_broker", str, "auto", "pub/sub broker name ('auto': redis if configured)"),
        Setting(
            "pubsub_backlog", int, DEFAULT_BACKLOG, "messages kept per slow subscriber", minimum=1
        ),
        Setting("config", Path, None, "TOML settings file (FLOWCORO_CONFIG)"),
    ]


@hookimpl
def flowcoro_pubsub_brokers() -> list[type[PubSubBroker]]:
    return [MemoryBroker]


class PluginsCommand(Command):
    name = "plugins"
    help = "list the loaded plugins: distribution, version and the hooks each implements"

    def configure(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--json", action="store_true", help="machine-readable output")

    def run(self, args: argparse.Namespace) -> int:
        plugins = args.flowcoro_plugins
        infos = plugins.info()
        if args.json:
            rows = [
                {
                    "name": i.name,
                    "distribution": i.distribution,
                    "version": i.version,
                    "hooks": list(i.hooks),
                }
                for i in infos
            ]
            print(json.dumps({"plugins": rows, "skipped": [str(e) for e in plugins.skipped]}))
            return 0
        for info in infos:
            print(f"{info.name}  {info.distribution} {info.version}")
            for hook in info.hooks:
                print(f"    {hook}")
        for err in plugins.skipped:
            print(f"skipped: {err}")
        return 0


class VersionCommand(Command):
    name = "version"
    help = "print the version of every installed FlowCoro distribution"

    def run(self, args: argparse.Namespace) -> int:
        found = sorted(
            (dist.metadata["Name"], dist.version)
            for dist in metadata.distributions()
            if (dist.metadata["Name"] or "").lower().startswith("flowcoro-")
        )
        for name, version in found:
            print(f"{name} {version}")
        return 0


@hookimpl
def flowcoro_cli_commands() -> list[Command]:
    return [PluginsCommand(), VersionCommand()]
