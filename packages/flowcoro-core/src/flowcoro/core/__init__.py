"""FlowCoro core: runtime, structured concurrency, containers, pools, logger and plugin platform."""

from __future__ import annotations

from flowcoro.core._version import __version__
from flowcoro.core.abc import Command, Component, Message, PubSubBroker, Subscription
from flowcoro.core.app import App, LifecycleError
from flowcoro.core.bridge import ThreadBridge
from flowcoro.core.broadcast import Broadcast, Subscriber
from flowcoro.core.buffers import BufferPool
from flowcoro.core.channel import Channel, ChannelStatistics, EndOfChannel
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
from flowcoro.core.health import CheckResult, HealthCheck, HealthRegistry, HealthReport
from flowcoro.core.hookspecs import hookimpl
from flowcoro.core.logger import Logger, bind_context, configure_logging, get_logger
from flowcoro.core.offload import to_process, to_thread
from flowcoro.core.plugins import Plugins, get_plugins
from flowcoro.core.pool import Pool, PoolStatistics
from flowcoro.core.pubsub import MemoryBroker
from flowcoro.core.ring import RingBuffer
from flowcoro.core.runtime import run
from flowcoro.core.scope import Scope, map_bounded, scope, when_all, when_any
from flowcoro.core.settings import Setting, Settings

__all__ = [
    "__version__",
    # plugin platform and app
    "hookimpl",
    "Plugins",
    "get_plugins",
    "App",
    "LifecycleError",
    "Component",
    "Command",
    "Setting",
    "Settings",
    "HealthCheck",
    "HealthRegistry",
    "HealthReport",
    "CheckResult",
    "PubSubBroker",
    "Subscription",
    "Message",
    "MemoryBroker",
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
    "effective_timeout",
    "remaining",
    "Pool",
    "PoolStatistics",
    "Channel",
    "ChannelStatistics",
    "EndOfChannel",
    "ThreadBridge",
    "Logger",
    "bind_context",
    "configure_logging",
    "get_logger",
    "Scope",
    "map_bounded",
    "scope",
    "when_all",
    "when_any",
    "to_process",
    "to_thread",
    "run",
    "RingBuffer",
    "Broadcast",
    "Subscriber",
    "BufferPool",
]
