"""The ``flowcoro`` command line. Subcommands come from plugins (``flowcoro_cli_commands``):
core contributes ``plugins`` and ``version``; flowcoro-http contributes ``serve``, and so on.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from flowcoro.core.abc import Command
from flowcoro.core.errors import FlowCoroError
from flowcoro.core.plugins import Plugins, flatten, get_plugins

__all__ = ["build_parser", "main"]


def build_parser(plugins: Plugins) -> tuple[argparse.ArgumentParser, dict[str, Command]]:
    parser = argparse.ArgumentParser(
        prog="flowcoro", description="FlowCoro: fast asyncio services, assembled from plugins."
    )
    # Commands reach the host they were built from (not necessarily the process-wide one).
    parser.set_defaults(flowcoro_plugins=plugins)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands: dict[str, Command] = {}
    for command in flatten(plugins.hook.flowcoro_cli_commands()):
        if not isinstance(command, Command):
            raise FlowCoroError(f"flowcoro_cli_commands returned {command!r}, not a Command")
        if command.name in commands:
            raise FlowCoroError(f"two plugins contribute the subcommand {command.name!r}")
        commands[command.name] = command
        command.configure(sub.add_parser(command.name, help=command.help, description=command.help))
    return parser, commands


def main(argv: Sequence[str] | None = None, *, plugins: Plugins | None = None) -> int:
    try:
        plugins = plugins or get_plugins()
        parser, commands = build_parser(plugins)
    except FlowCoroError as exc:
        print(f"flowcoro: {exc}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return commands[args.command].run(args)
    except FlowCoroError as exc:
        print(f"flowcoro {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover - exercised through the console script
    sys.exit(main())
