"""flowcoro-net: TCP, TLS and Unix-socket servers and clients on uvloop, with limits,
backpressure, graceful drain and multi-process ``SO_REUSEPORT`` workers."""

from __future__ import annotations

from flowcoro.net._version import __version__
from flowcoro.net.errors import (
    ClosedPoolError,
    ConnectError,
    ConnectionClosedError,
    ConnectTimeout,
    IncompleteReadError,
    InvalidLimit,
    LimitExceeded,
    NetError,
    NetTimeout,
    ReadTimeout,
    WorkerError,
    WriteTimeout,
)
from flowcoro.net.limits import DrainStats, Limits, ServerStatistics
from flowcoro.net.loop import loop_kind, new_event_loop
from flowcoro.net.pool import ConnectionPool
from flowcoro.net.protocol import BaseProtocol
from flowcoro.net.server import ConnectionObserver, Server, start_server
from flowcoro.net.streams import Connection, StreamProtocol, connect
from flowcoro.net.workers import run_server

__all__ = [
    "__version__",
    # servers
    "BaseProtocol",
    "start_server",
    "run_server",
    "Server",
    "Limits",
    "ServerStatistics",
    "DrainStats",
    "ConnectionObserver",
    # streams and clients
    "Connection",
    "StreamProtocol",
    "connect",
    "ConnectionPool",
    # event loop
    "loop_kind",
    "new_event_loop",
    # errors
    "NetError",
    "InvalidLimit",
    "NetTimeout",
    "ConnectTimeout",
    "ReadTimeout",
    "WriteTimeout",
    "ConnectError",
    "ConnectionClosedError",
    "IncompleteReadError",
    "LimitExceeded",
    "WorkerError",
    "ClosedPoolError",
]
