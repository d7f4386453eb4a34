"""FlowCoro core: runtime, structured concurrency, containers, pools, logger and plugin platform."""

from __future__ import annotations

from flowcoro.core._version import __version__
from flowcoro.core.deadline import deadline, effective_timeout, remaining
from flowcoro.core.errors import (
    BrokenResourceError,
    BusyResourceError,
    ClosedResourceError,
    ConfigError,
    DeadlineExceeded,
    FlowCoroError,
    PluginError,
    PoolTimeout,
    WouldBlock,
)
from flowcoro.core.hookspecs import hookimpl
from flowcoro.core.pool import Pool, PoolStatistics

__all__ = [
    "__version__",
    # plugin platform
    "hookimpl",
    # errors
    "FlowCoroError",
    "ConfigError",
    "PluginError",
    "ClosedResourceError",
    "BrokenResourceError",
    "BusyResourceError",
    "WouldBlock",
    "PoolTimeout",
    "DeadlineExceeded",
    # runtime
    "deadline",
    "remaining",
    "effective_timeout",
    "Pool",
    "PoolStatistics",
]
