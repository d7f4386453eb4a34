from __future__ import annotations

from pathlib import Path

import pytest

from flowcoro.core.errors import ConfigError
from flowcoro.core.settings import Setting, load_settings, read_settings_file

SPECS = [
    Setting("port", int, 8080, "listen port", minimum=1),
    Setting("ratio", float, 0.5),
    Setting("debug", bool, False),
    Setting("name", str, "svc"),
    Setting("tags", list, []),
    Setting("root", Path, None),
    Setting("mode", str, "fast", choices=("fast", "safe")),
    Setting("db_url", str, None),
]


def load(**kw: object) -> object:
    return load_settings(SPECS, **kw)  # type: ignore[arg-type]


def test_defaults_when_nothing_is_set() -> None:
    s = load_settings(SPECS, env={})
    assert s["port"] == 8080
    assert s["debug"] is False
    assert s.source("port") == "default"
    assert len(s) == len(SPECS)
    assert set(s) == {spec.key for spec in SPECS}


def test_precedence_keyword_over_env_over_file(tmp_path: Path) -> None:
    f = tmp_path / "app.toml"
    f.write_text("port = 1000\nratio = 0.25\nname = 'from-file'\n")
    env = {"FLOWCORO_PORT": "2000", "FLOWCORO_RATIO": "0.75"}
    s = load_settings(SPECS, kwargs={"port": 3000}, env=env, settings_file=f)
    assert s["port"] == 3000
    assert s.source("port") == "keyword argument"
    assert s["ratio"] == 0.75
    assert s.source("ratio") == "environment variable FLOWCORO_RATIO"
    assert s["name"] == "from-file"
    assert "settings file" in s.source("name")


def test_keyword_none_means_unset() -> None:
    s = load_settings(SPECS, kwargs={"port": None}, env={"FLOWCORO_PORT": "81"})
    assert s["port"] == 81


def test_conversions_from_environment_strings() -> None:
    env = {
        "FLOWCORO_DEBUG": "yes",
        "FLOWCORO_TAGS": "a, b,,c",
        "FLOWCORO_ROOT": "/srv",
        "FLOWCORO_MODE": "safe",
    }
    s = load_settings(SPECS, env=env)
    assert s["debug"] is True
    assert s["tags"] == ["a", "b", "c"]
    assert s["root"] == Path("/srv")
    assert s["mode"] == "safe"


def test_toml_tables_flatten_into_keys(tmp_path: Path) -> None:
    f = tmp_path / "app.toml"
    f.write_text('[db]\nurl = "sqlite://x"\n')
    assert load_settings(SPECS, env={}, settings_file=f)["db_url"] == "sqlite://x"


def test_pyproject_reads_only_tool_flowcoro(tmp_path: Path) -> None:
    f = tmp_path / "pyproject.toml"
    f.write_text('[project]\nname = "x"\n[tool.flowcoro]\nport = 9\n')
    assert read_settings_file(f) == {"port": 9}


def test_config_file_from_environment(tmp_path: Path) -> None:
    f = tmp_path / "app.toml"
    f.write_text("port = 4242\n")
    assert load_settings(SPECS, env={"FLOWCORO_CONFIG": str(f)})["port"] == 4242


@pytest.mark.parametrize(
    ("env", "key", "fragment"),
    [
        ({"FLOWCORO_PORT": "eighty"}, "port", "expected an integer"),
        ({"FLOWCORO_PORT": "0"}, "port", "at least 1"),
        ({"FLOWCORO_RATIO": "half"}, "ratio", "expected a number"),
        ({"FLOWCORO_DEBUG": "maybe"}, "debug", "expected a boolean"),
        ({"FLOWCORO_MODE": "turbo"}, "mode", "expected one of 'fast', 'safe'"),
    ],
)
def test_bad_environment_value_names_the_key_and_source(
    env: dict[str, str], key: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(SPECS, env=env)
    assert info.value.key == key
    assert fragment in str(info.value)
    assert f"FLOWCORO_{key.upper()}" in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "key", "fragment"),
    [
        ({"port": True}, "port", "expected an integer"),
        ({"port": 1.5}, "port", "expected an integer"),
        ({"ratio": [1]}, "ratio", "expected a number"),
        ({"name": 5}, "name", "expected a string"),
        ({"tags": [1, 2]}, "tags", "list of strings"),
        ({"debug": 3}, "debug", "expected a boolean"),
        ({"prot": 1}, "prot", "unknown setting"),
    ],
)
def test_bad_keyword_names_the_key(kwargs: dict[str, object], key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(SPECS, kwargs=kwargs, env={})
    assert info.value.key == key
    assert fragment in str(info.value)


def test_unknown_key_in_file_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "app.toml"
    f.write_text("prot = 1\n")
    with pytest.raises(ConfigError, match="unknown setting") as info:
        load_settings(SPECS, env={}, settings_file=f)
    assert info.value.key == "prot"


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("port = = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(SPECS, env={}, settings_file=bad)
    with pytest.raises(ConfigError, match="cannot read settings file"):
        load_settings(SPECS, env={}, settings_file=tmp_path / "missing.toml")


def test_require_names_the_variable() -> None:
    s = load_settings(SPECS, env={})
    with pytest.raises(ConfigError, match="FLOWCORO_DB_URL") as info:
        s.require("db_url")
    assert info.value.key == "db_url"
    assert s.require("port") == 8080


def test_unknown_key_lookup_lists_known_keys() -> None:
    s = load_settings(SPECS, env={})
    with pytest.raises(KeyError, match=r"known: .*port"):
        s["nope"]
    assert s.get("nope") is None
    assert s.spec("port").help == "listen port"
    assert "Settings(" in repr(s)


def test_custom_converter_errors_name_the_key() -> None:
    def port_list(raw: object) -> list[int]:
        return [int(p) for p in str(raw).split(":")]

    specs = [Setting("ports", port_list, [])]
    assert load_settings(specs, env={"FLOWCORO_PORTS": "1:2"})["ports"] == [1, 2]
    with pytest.raises(ConfigError) as info:
        load_settings(specs, env={"FLOWCORO_PORTS": "1:x"})
    assert info.value.key == "ports"


def test_conflicting_declarations_and_bad_keys_are_refused() -> None:
    with pytest.raises(ConfigError, match="declared twice"):
        load_settings([Setting("a", int, 1), Setting("a", int, 2)], env={})
    # The same declaration twice (two plugins agreeing) is fine.
    assert load_settings([Setting("a", int, 1), Setting("a", int, 1)], env={})["a"] == 1
    with pytest.raises(ConfigError, match="lower-case identifier"):
        Setting("Bad-Key")
