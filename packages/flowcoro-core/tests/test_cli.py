from __future__ import annotations

import argparse
import json

import pytest

from flowcoro.core import Command, FlowCoroError, hookimpl
from flowcoro.core.cli import main
from flowcoro.core.plugins import Plugins


class Greet(Command):
    name = "greet"
    help = "say hello"

    def configure(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("who")

    def run(self, args: argparse.Namespace) -> int:
        if args.who == "error":
            raise FlowCoroError("cannot greet that")
        if args.who == "interrupt":
            raise KeyboardInterrupt
        print(f"hello {args.who}")
        return 0


class GreetPlugin:
    @hookimpl
    def flowcoro_cli_commands(self) -> list[Command]:
        return [Greet()]


def host_with(*plugins: object) -> Plugins:
    host = Plugins(autoload=False)
    for i, plugin in enumerate(plugins):
        host.register(plugin, name=f"p{i}", distribution="greet-dist")
    return host


def test_plugins_lists_distribution_version_and_hooks(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins"], plugins=host_with(GreetPlugin())) == 0
    out = capsys.readouterr().out
    assert "core  flowcoro-core 0.1.0" in out
    assert "    flowcoro_cli_commands" in out
    assert "p0  greet-dist" in out


def test_plugins_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins", "--json"], plugins=host_with()) == 0
    data = json.loads(capsys.readouterr().out)
    (core,) = data["plugins"]
    assert core["distribution"] == "flowcoro-core"
    assert "flowcoro_settings" in core["hooks"]
    assert data["skipped"] == []


def test_version_lists_installed_distributions(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"], plugins=host_with()) == 0
    assert "flowcoro-core 0.1.0" in capsys.readouterr().out


def test_plugin_subcommands_run(capsys: pytest.CaptureFixture[str]) -> None:
    host = host_with(GreetPlugin())
    assert main(["greet", "world"], plugins=host) == 0
    assert capsys.readouterr().out == "hello world\n"
    assert main(["greet", "error"], plugins=host) == 1
    assert "flowcoro greet: cannot greet that" in capsys.readouterr().err
    assert main(["greet", "interrupt"], plugins=host) == 130


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([], plugins=host_with()) == 2
    assert "COMMAND" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        main(["nope"], plugins=host_with())
    assert info.value.code == 2


def test_conflicting_or_bad_commands_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["greet", "x"], plugins=host_with(GreetPlugin(), GreetPlugin())) == 2
    assert "two plugins contribute the subcommand 'greet'" in capsys.readouterr().err

    class Bad:
        @hookimpl
        def flowcoro_cli_commands(self) -> list[object]:
            return ["not a command"]

    assert main(["plugins"], plugins=host_with(Bad())) == 2
    assert "not a Command" in capsys.readouterr().err
