"""The root of every FlowCoro error and the resource-state errors the core raises.

Each distribution derives its own base from `FlowCoroError` (`NetError`, `HTTPError`, `DBError`,
...) and translates third-party exceptions at its adapter boundary, chained with ``from exc``.
"""

from __future__ import annotations

__all__ = [
    "FlowCoroError",
    "ConfigError",
    "PluginError",
    "ClosedResourceError",
    "BrokenResourceError",
    "BusyResourceError",
    "WouldBlock",
    "PoolTimeout",
    "DeadlineExceeded",
]


class FlowCoroError(Exception):
    """Base class of every error FlowCoro raises on purpose."""


class ConfigError(FlowCoroError, ValueError):
    """A setting has a bad value; `key` names it (as in ``FLOWCORO_<KEY>`` or the TOML file)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"setting {key!r}: {message}")
        self.key = key


class PluginError(FlowCoroError):
    """A plugin failed to import or validate; `distribution` names the package it came from."""

    def __init__(self, distribution: str, message: str) -> None:
        super().__init__(f"plugin from distribution {distribution!r}: {message}")
        self.distribution = distribution


class ClosedResourceError(FlowCoroError):
    """The resource was closed by this side and can no longer be used."""


class BrokenResourceError(FlowCoroError):
    """The resource failed (peer went away, connection lost) and can no longer be used."""


class BusyResourceError(FlowCoroError):
    """Another task is already using a resource that allows one user at a time."""


class WouldBlock(FlowCoroError):
    """A ``*_nowait`` operation could not complete without waiting."""


class PoolTimeout(FlowCoroError, TimeoutError):
    """No resource became free within the pool's acquire timeout (or the caller's deadline)."""


class DeadlineExceeded(FlowCoroError, TimeoutError):
    """The deadline carried by the calling context expired."""
