from __future__ import annotations

import logging
import sys
import types
from importlib.metadata import EntryPoint
from typing import Any

import pluggy
import pytest

from flowcoro.core import hookimpl, plugins
from flowcoro.core.errors import ConfigError, PluginError
from flowcoro.core.hookspecs import hookspec
from flowcoro.core.plugins import Plugins, flatten, get_plugins, set_plugins, settle


def make_module(name: str, **attrs: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    sys.modules[name] = module
    return module


def extra_specs_module() -> types.ModuleType:
    specs = make_module("flowcoro_fake_specs")

    @hookspec
    def flowcoro_extra_things() -> list[str]:
        """Return extra things."""

    specs.flowcoro_extra_things = flowcoro_extra_things
    return specs


def test_core_builtins_register_through_the_hooks() -> None:
    host = Plugins(autoload=False)
    (core,) = host.info()
    assert core.name == "core"
    assert core.distribution == "flowcoro-core"
    assert core.version
    assert "flowcoro_settings" in core.hooks
    assert "flowcoro_cli_commands" in core.hooks
    brokers = flatten(host.hook.flowcoro_pubsub_brokers())
    assert [b.PLUGIN_NAME for b in brokers] == ["memory"]


def test_a_distribution_adds_its_own_hookspecs() -> None:
    host = Plugins(autoload=False)
    specs = extra_specs_module()

    class Provider:
        @hookimpl
        def flowcoro_add_hookspecs(self, pm: pluggy.PluginManager) -> None:
            pm.add_hookspecs(specs)

        @hookimpl
        def flowcoro_extra_things(self) -> list[str]:
            return ["a", "b"]

    class Consumer:
        @hookimpl
        def flowcoro_extra_things(self) -> list[str]:
            return ["c"]

    host.register(Consumer(), name="consumer", distribution="consumer-dist")
    host.register(Provider(), name="provider", distribution="provider-dist")
    assert sorted(flatten(host.hook.flowcoro_extra_things())) == ["a", "b", "c"]
    info = {i.name: i for i in host.info()}
    assert info["consumer"].distribution == "consumer-dist"
    assert info["consumer"].hooks == ("flowcoro_extra_things",)


def test_invalid_hookimpl_names_the_distribution() -> None:
    host = Plugins(autoload=False)

    class Bad:
        @hookimpl
        def flowcoro_settings(self, unexpected: int) -> list[Any]:
            return []

    with pytest.raises(PluginError) as info:
        host.register(Bad(), name="bad", distribution="bad-dist")
    assert info.value.distribution == "bad-dist"
    assert "unexpected" in str(info.value)


def fake_entry_points(monkeypatch: pytest.MonkeyPatch, *eps: tuple[str, str, str]) -> None:
    class Dist:
        def __init__(self, name: str) -> None:
            self.name = name

    points = []
    for name, value, dist in eps:
        ep = EntryPoint(name, value, "flowcoro")
        points.append(types.SimpleNamespace(name=name, value=value, dist=Dist(dist), load=ep.load))

    def entry_points(group: str) -> list[Any]:
        assert group == "flowcoro"
        return points

    monkeypatch.setattr(plugins.metadata, "entry_points", entry_points)


class GoodPlugin:
    @hookimpl
    def flowcoro_startup(self, app: Any) -> None:
        return None


def test_entry_points_load_with_only_and_block(monkeypatch: pytest.MonkeyPatch) -> None:
    make_module("flowcoro_good_a", plugin=GoodPlugin())
    make_module("flowcoro_good_b", plugin=GoodPlugin())
    fake_entry_points(
        monkeypatch,
        ("a", "flowcoro_good_a:plugin", "dist-a"),
        ("b", "flowcoro_good_b:plugin", "dist-b"),
        ("core", "flowcoro.core.plugin", "flowcoro-core"),
    )
    names = lambda host: sorted(i.name for i in host.info())  # noqa: E731
    assert names(Plugins()) == ["a", "b", "core"]
    assert names(Plugins(only=["dist-a"])) == ["a", "core"]
    assert names(Plugins(block=["b"])) == ["a", "core"]
    assert names(Plugins(autoload=False)) == ["core"]


def test_broken_entry_point_raises_naming_distribution(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_entry_points(monkeypatch, ("broken", "flowcoro_does_not_exist:plugin", "broken-dist"))
    with pytest.raises(PluginError) as info:
        Plugins()
    assert info.value.distribution == "broken-dist"
    assert "failed to import" in str(info.value)
    assert isinstance(info.value.__cause__, ModuleNotFoundError)


def test_broken_plugin_is_skipped_when_configured(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    make_module("flowcoro_good_c", plugin=GoodPlugin())
    fake_entry_points(
        monkeypatch,
        ("broken", "flowcoro_does_not_exist:plugin", "broken-dist"),
        ("c", "flowcoro_good_c:plugin", "dist-c"),
    )
    with caplog.at_level(logging.WARNING, logger="flowcoro.plugins"):
        host = Plugins(on_error="skip")
    assert sorted(i.name for i in host.info()) == ["c", "core"]
    assert [e.distribution for e in host.skipped] == ["broken-dist"]
    assert "broken-dist" in caplog.text


def test_hookimpl_without_spec_is_reported_and_can_be_skipped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Typo:
        @hookimpl
        def flowcoro_setings(self) -> list[Any]:
            return []

    class Optional:
        @hookimpl(optionalhook=True)
        def flowcoro_http_routes(self) -> list[Any]:
            return []

    make_module("flowcoro_typo", plugin=Typo())
    make_module("flowcoro_optional", plugin=Optional())
    fake_entry_points(
        monkeypatch,
        ("typo", "flowcoro_typo:plugin", "typo-dist"),
        ("optional", "flowcoro_optional:plugin", "optional-dist"),
    )
    with pytest.raises(PluginError) as info:
        Plugins()
    assert info.value.distribution == "typo-dist"
    assert "flowcoro_setings" in str(info.value)
    host = Plugins(on_error="skip")
    assert sorted(i.name for i in host.info()) == ["core", "optional"]


def test_trace_logs_hook_calls(caplog: pytest.LogCaptureFixture) -> None:
    host = Plugins(autoload=False, trace=True)
    with caplog.at_level(logging.DEBUG, logger="flowcoro.plugins"):
        host.hook.flowcoro_pubsub_brokers()
    assert "flowcoro_pubsub_brokers" in caplog.text


def test_switches_from_environment() -> None:
    switches = plugins._switches(
        {
            "FLOWCORO_PLUGINS": "http, db",
            "FLOWCORO_PLUGINS_BLOCK": "observe",
            "FLOWCORO_PLUGINS_AUTOLOAD": "off",
            "FLOWCORO_PLUGINS_TRACE": "1",
            "FLOWCORO_PLUGINS_ON_ERROR": "skip",
        }
    )
    assert switches == {
        "autoload": False,
        "only": ["http", "db"],
        "block": ["observe"],
        "trace": True,
        "on_error": "skip",
    }
    assert plugins._switches({})["autoload"] is True
    with pytest.raises(ConfigError) as info:
        plugins._switches({"FLOWCORO_PLUGINS_AUTOLOAD": "maybe"})
    assert info.value.key == "plugins_autoload"
    with pytest.raises(ConfigError) as info:
        plugins._switches({"FLOWCORO_PLUGINS_ON_ERROR": "ignore"})
    assert info.value.key == "plugins_on_error"
    with pytest.raises(ConfigError):
        Plugins(on_error="ignore")  # type: ignore[arg-type]


def test_process_wide_host_is_built_lazily_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWCORO_PLUGINS_AUTOLOAD", "0")
    set_plugins(None)
    try:
        first = get_plugins()
        assert get_plugins() is first
        custom = Plugins(autoload=False)
        set_plugins(custom)
        assert get_plugins() is custom
    finally:
        set_plugins(None)


def test_flatten_and_settle() -> None:
    assert flatten([[1, 2], None, (3,), 4]) == [1, 2, 3, 4]

    async def three() -> int:
        return 3

    import asyncio

    assert asyncio.run(settle([1, three(), None])) == [1, 3, None]


def test_distribution_guess_for_hand_registered_plugins() -> None:
    assert plugins._distribution_of(plugins) == "flowcoro-core"
    assert plugins._distribution_of(make_module("thirdparty.plugin")) == "thirdparty"
    assert plugins._version_of("no-such-distribution-anywhere") == ""
