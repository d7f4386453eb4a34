"""Settings: declared by plugins, read from keyword arguments, ``FLOWCORO_*`` variables and TOML.

Each plugin declares what it reads with the ``flowcoro_settings`` hook. Keys are flat snake_case:
``redis_url`` is ``FLOWCORO_REDIS_URL`` in the environment and ``redis_url = "..."`` (or
``[redis]`` / ``url = "..."``) in the TOML file. Precedence, highest first: keyword arguments,
environment, file, declared default. A value that does not fit raises `ConfigError` naming the key,
where it came from and what was expected.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowcoro.core.errors import ConfigError

__all__ = ["Setting", "Settings", "load_settings", "ENV_PREFIX"]

ENV_PREFIX = "FLOWCORO_"
CONFIG_ENV = "FLOWCORO_CONFIG"

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError("expected a boolean (true/false, 1/0, yes/no, on/off)")


def _to_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("expected an integer")
    try:
        return int(value)
    except ValueError:
        raise ValueError("expected an integer") from None


def _to_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("expected a number")
    try:
        return float(value)
    except ValueError:
        raise ValueError("expected a number") from None


def _to_str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return value


def _to_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ValueError("expected a list of strings (comma-separated in the environment)")


_CONVERTERS: dict[Any, Callable[[Any], Any]] = {
    bool: _to_bool,
    int: _to_int,
    float: _to_float,
    str: _to_str,
    list: _to_list,
    Path: lambda v: Path(_to_str(v)),
}


@dataclass(frozen=True, slots=True)
class Setting:
    """One setting a plugin reads. ``type`` is bool, int, float, str, list, Path or any callable
    that converts a raw value (raising ValueError with a message when it cannot)."""

    key: str
    type: Callable[[Any], Any] = str
    default: Any = None
    help: str = ""
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None

    def __post_init__(self) -> None:
        if not self.key.isidentifier() or self.key.lower() != self.key:
            raise ConfigError(self.key, "a setting key must be a lower-case identifier")

    @property
    def env_var(self) -> str:
        return ENV_PREFIX + self.key.upper()

    def convert(self, raw: Any, source: str) -> Any:
        convert = _CONVERTERS.get(self.type, self.type)
        try:
            value = convert(raw)
        except (ValueError, TypeError) as exc:
            raise ConfigError(self.key, f"{exc} (from {source}, got {raw!r})") from exc
        if self.choices is not None and value not in self.choices:
            options = ", ".join(repr(c) for c in self.choices)
            raise ConfigError(self.key, f"expected one of {options} (from {source}, got {raw!r})")
        if self.minimum is not None and value < self.minimum:
            raise ConfigError(
                self.key, f"must be at least {self.minimum:g} (from {source}, got {raw!r})"
            )
        return value


class Settings(Mapping[str, Any]):
    """Read-only resolved settings; `source(key)` tells where each value came from."""

    __slots__ = ("_sources", "_specs", "_values")

    def __init__(
        self, values: dict[str, Any], sources: dict[str, str], specs: dict[str, Setting]
    ) -> None:
        self._values = values
        self._sources = sources
        self._specs = specs

    def __getitem__(self, key: str) -> Any:
        try:
            return self._values[key]
        except KeyError:
            raise KeyError(f"unknown setting {key!r}; known: {', '.join(sorted(self))}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def require(self, key: str) -> Any:
        """The value of ``key``; `ConfigError` naming the key and its variable when it is unset."""
        value = self._values.get(key)
        if value is None:
            spec = self._specs.get(key)
            where = f" (set {spec.env_var} or {key!r} in the settings file)" if spec else ""
            raise ConfigError(key, f"is required but not set{where}")
        return value

    def source(self, key: str) -> str:
        return self._sources[key]

    def spec(self, key: str) -> Setting:
        return self._specs[key]

    def __repr__(self) -> str:
        return f"Settings({self._values!r})"


def _flatten_table(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, value in table.items():
        key = f"{prefix}{name}".replace("-", "_").lower()
        if isinstance(value, dict):
            flat.update(_flatten_table(value, key + "_"))
        else:
            flat[key] = value
    return flat


def read_settings_file(path: str | Path) -> dict[str, Any]:
    """Flat keys from a TOML file; in a ``pyproject.toml`` only ``[tool.flowcoro]`` is read."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError("config", f"cannot read settings file {str(path)!r}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        message = f"settings file {str(path)!r} is not valid TOML: {exc}"
        raise ConfigError("config", message) from exc
    if path.name == "pyproject.toml":
        data = data.get("tool", {}).get("flowcoro", {})
    return _flatten_table(data)


def load_settings(
    specs: Iterable[Setting],
    *,
    kwargs: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    settings_file: str | Path | None = None,
) -> Settings:
    by_key: dict[str, Setting] = {}
    for spec in specs:
        if spec.key in by_key and by_key[spec.key] != spec:
            raise ConfigError(spec.key, "declared twice with different definitions")
        by_key[spec.key] = spec
    env = os.environ if env is None else env
    kwargs = kwargs or {}
    if settings_file is None and env.get(CONFIG_ENV):
        settings_file = env[CONFIG_ENV]
    from_file = read_settings_file(settings_file) if settings_file is not None else {}
    for key in [*kwargs, *from_file]:
        if key not in by_key:
            known = ", ".join(sorted(by_key))
            hint = "is the plugin that reads it installed?"
            raise ConfigError(key, f"unknown setting ({hint}); known: {known}")

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key, spec in by_key.items():
        if kwargs.get(key) is not None:
            raw, source = kwargs[key], "keyword argument"
        elif spec.env_var in env:
            raw, source = env[spec.env_var], f"environment variable {spec.env_var}"
        elif key in from_file:
            raw, source = from_file[key], f"settings file {str(settings_file)!r}"
        else:
            values[key], sources[key] = spec.default, "default"
            continue
        values[key] = spec.convert(raw, source)
        sources[key] = source
    return Settings(values, sources, by_key)
