"""A plugin package written by the test, installed from its own pyproject.toml next to
flowcoro-core, is loaded through the entry point, listed, and contributes a subcommand and a
setting; a broken one gives an error naming its distribution."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from _matrix import Venv, build_wheels

GOOD = """
import argparse
from flowcoro.core import Command, hookimpl
from flowcoro.core.settings import Setting


class Hello(Command):
    name = "hello"
    help = "greet from a third-party plugin"

    def configure(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--who", default="world")

    def run(self, args: argparse.Namespace) -> int:
        from flowcoro.core import App
        app = App(plugins=args.flowcoro_plugins)
        print(f"{app.settings['greeting']}, {args.who}!")
        return 0


@hookimpl
def flowcoro_cli_commands():
    return [Hello()]


@hookimpl
def flowcoro_settings():
    return [Setting("greeting", str, "Hello", "how to greet")]
"""

BROKEN = """
raise ImportError("this plugin needs a library that is not installed")
"""

PYPROJECT = """
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "{dist}"
version = "1.2.3"
dependencies = ["flowcoro-core"]

[project.entry-points.flowcoro]
{ep} = "{module}"

[tool.hatch.build.targets.wheel]
packages = ["{module}"]
"""


def write_plugin(root: Path, dist: str, ep: str, module: str, code: str) -> Path:
    path = root / dist
    (path / module).mkdir(parents=True)
    (path / module / "__init__.py").write_text(textwrap.dedent(code))
    (path / "pyproject.toml").write_text(PYPROJECT.format(dist=dist, ep=ep, module=module))
    return path


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    root = tmp_path_factory.mktemp("plugins")
    wheels = build_wheels(root / "wheels")
    env = Venv(root / "venv")
    env.install("flowcoro-core", wheels=wheels)
    good = write_plugin(root, "flowcoro-hello", "hello", "flowcoro_hello", GOOD)
    env.install(str(good), wheels=wheels)
    return env


def test_plugin_is_listed_with_its_distribution_and_hooks(venv: Venv) -> None:
    result = venv.flowcoro("plugins", "--json")
    assert result.returncode == 0, result.stderr
    plugins = {p["name"]: p for p in json.loads(result.stdout)["plugins"]}
    assert plugins["hello"] == {
        "name": "hello",
        "distribution": "flowcoro-hello",
        "version": "1.2.3",
        "hooks": ["flowcoro_cli_commands", "flowcoro_settings"],
    }


def test_plugin_subcommand_runs_with_its_setting(venv: Venv) -> None:
    result = venv.flowcoro("hello", "--who", "FlowCoro")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Hello, FlowCoro!\n"
    result = venv.flowcoro("hello", env={"FLOWCORO_GREETING": "Hi"})
    assert result.stdout == "Hi, world!\n"


def test_plugins_can_be_switched_off(venv: Venv) -> None:
    result = venv.flowcoro("plugins", "--json", env={"FLOWCORO_PLUGINS_AUTOLOAD": "0"})
    assert [p["name"] for p in json.loads(result.stdout)["plugins"]] == ["core"]
    result = venv.flowcoro("plugins", "--json", env={"FLOWCORO_PLUGINS_BLOCK": "flowcoro-hello"})
    assert [p["name"] for p in json.loads(result.stdout)["plugins"]] == ["core"]


def test_broken_plugin_names_its_distribution(
    venv: Venv, tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = tmp_path_factory.mktemp("broken")
    broken = write_plugin(root, "flowcoro-broken", "broken", "flowcoro_broken", BROKEN)
    venv.install(str(broken), wheels=root)
    try:
        result = venv.flowcoro("plugins")
        assert result.returncode == 2
        assert "plugin from distribution 'flowcoro-broken'" in result.stderr
        assert "needs a library that is not installed" in result.stderr

        skipped = venv.flowcoro("plugins", "--json", env={"FLOWCORO_PLUGINS_ON_ERROR": "skip"})
        assert skipped.returncode == 0, skipped.stderr
        data = json.loads(skipped.stdout)
        assert "hello" in {p["name"] for p in data["plugins"]}
        assert len(data["skipped"]) == 1
        assert "flowcoro-broken" in data["skipped"][0]
    finally:
        from _matrix import run, uv

        run([uv(), "pip", "uninstall", "--python", venv.python, "flowcoro-broken"])
