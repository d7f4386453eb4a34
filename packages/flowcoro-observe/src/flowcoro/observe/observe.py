"""`Observe`: one app's metrics, tracing and health, as a core `Component`.

The plugin creates one per app (`Observe.for_app`) and hands its parts to the other packages'
hooks at wiring time: the request observer to flowcoro-http (with the tracer's hook on it only
when tracing is on), the routes. At start it begins the loop-lag monitor, the multi-worker flusher
and the tracer provider; at stop it flushes and hands its counts to the retired totals.
"""

from __future__ import annotations

import asyncio
import logging
import os
import weakref
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import prometheus_client
from prometheus_client.metrics_core import Metric

from flowcoro.core import logger
from flowcoro.core.abc import Component
from flowcoro.core.settings import Setting
from flowcoro.observe import tracing
from flowcoro.observe.connections import CONNECTIONS
from flowcoro.observe.dbmetrics import QUERIES
from flowcoro.observe.exposition import render
from flowcoro.observe.health import liveness, readiness
from flowcoro.observe.httpmetrics import RequestMetrics
from flowcoro.observe.instruments import MetricsRegistry
from flowcoro.observe.looplag import LoopLagMonitor
from flowcoro.observe.multiprocess import ENV_DIR, SharedStore
from flowcoro.observe.pools import PoolCollector
from flowcoro.observe.wsmetrics import WebSocketMetrics

__all__ = ["SETTINGS", "Observe"]

log = logging.getLogger("flowcoro.observe")

SETTINGS: list[Setting] = [
    Setting("metrics_enabled", bool, True, "Expose Prometheus metrics"),
    Setting("metrics_path", str, "/metrics", "Path of the metrics endpoint"),
    Setting(
        "metrics_port",
        int,
        0,
        "Serve /metrics, /healthz, /readyz on this port instead of the app's (0: on the app)",
        minimum=0,
    ),
    Setting("metrics_host", str, "127.0.0.1", "Host of the separate metrics port"),
    Setting(
        "metrics_dir",
        str,
        "",
        "Directory shared by forked workers so that one scrape sums them all ('' = one process)",
    ),
    Setting(
        "metrics_flush_interval",
        float,
        1.0,
        "Seconds between a worker's snapshots into metrics_dir",
        minimum=0.05,
    ),
    Setting("http_metrics", bool, True, "Record HTTP request metrics"),
    Setting(
        "loop_lag_interval", float, 0.5, "Seconds between event-loop lag samples", minimum=0.01
    ),
    Setting(
        "tracing",
        str,
        "auto",
        "OpenTelemetry tracing: on, off, or auto (on when OTEL_TRACES_EXPORTER is set to an "
        "exporter or an SDK tracer provider is already installed)",
        choices=("auto", "on", "off"),
    ),
    Setting("health_path", str, "/healthz", "Path of the liveness endpoint"),
    Setting("ready_path", str, "/readyz", "Path of the readiness endpoint"),
    Setting(
        "readiness_timeout", float, 5.0, "Bound on all readiness checks together", minimum=0.001
    ),
]

_DEFAULTS: dict[str, Any] = {s.key: s.default for s in SETTINGS}


class Observe(Component):
    """Metrics registry, HTTP request and WebSocket metrics, pool and loop-lag collectors,
    tracing, health."""

    name = "observe"
    _by_app: ClassVar[weakref.WeakKeyDictionary[Any, Observe]] = weakref.WeakKeyDictionary()

    def __init__(self, settings: Mapping[str, Any] | None = None, **overrides: Any) -> None:
        given = dict(settings or {})
        given.update(overrides)
        self.config: dict[str, Any] = {k: given.get(k, v) for k, v in _DEFAULTS.items()}
        self.app: Any = None
        self.registry = MetricsRegistry()
        self.http = RequestMetrics()
        self.pools = PoolCollector()
        self.ws = WebSocketMetrics()
        self.loop_lag = LoopLagMonitor(self.registry, float(self.config["loop_lag_interval"]))
        self.registry.add_collector(self.http)
        self.registry.add_collector(self.pools)
        self.registry.add_collector(self.ws)
        self.registry.add_collector(CONNECTIONS)
        self.registry.add_collector(QUERIES)
        # The environment too: the supervisor may export it after the app read its settings.
        directory = self.config["metrics_dir"] or os.environ.get(ENV_DIR, "")
        self.store: SharedStore | None = SharedStore(directory) if directory else None
        self.tracer_provider: Any = None
        self._flusher: asyncio.Task[None] | None = None
        self._log_fields = False

    @classmethod
    def for_app(cls, app: Any) -> Observe:
        """The app's `Observe` (created from its settings on first use)."""
        found = cls._by_app.get(app)
        if found is None:
            settings = getattr(app, "settings", {})
            found = cls({k: settings[k] for k in _DEFAULTS if k in settings})
            found.app = app
            cls._by_app[app] = found
        return found

    # -- configuration --------------------------------------------------------------------

    @property
    def tracing_enabled(self) -> bool:
        mode = self.config["tracing"]
        if mode == "auto":
            exporter = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
            return tracing.tracing_active() or exporter not in ("", "none")
        return bool(mode == "on")

    def http_observers(self) -> list[Any]:
        """What flowcoro-http's ``flowcoro_http_observers`` gets (at wiring): the request metrics
        and, with tracing on, the tracer's ``request_entered`` on that same observer (one
        observer keeps the protocol's direct call to the recorder)."""
        metrics = bool(self.config["metrics_enabled"] and self.config["http_metrics"])
        tracer = (
            tracing.HTTPTracing(self.http if metrics else None) if self.tracing_enabled else None
        )
        if metrics:
            self.http.trace(tracer)
            return [self.http]
        return [] if tracer is None else [tracer]

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self, app: Any) -> None:
        if self.app is None and app is not None:
            self.app = app
            Observe._by_app[app] = self
        if self.tracing_enabled:
            self.tracer_provider = tracing.configure_tracing()
            # Log records of the core logger carry trace_id/span_id while a span is current.
            logger.add_context_provider(tracing.trace_log_fields)
            self._log_fields = True
        self.loop_lag.start()
        if self.store is not None and self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(
                self._flush_forever(), name="flowcoro-observe-flush"
            )

    async def _stop_tasks(self) -> None:
        flusher, self._flusher = self._flusher, None
        if flusher is not None:
            flusher.cancel()
            await asyncio.wait([flusher])  # waits without re-raising its CancelledError
        await self.loop_lag.stop()

    async def stop(self) -> None:
        await self._stop_tasks()
        if self.store is not None:
            try:
                self.store.write(self.collect())
                self.store.retire()
            except OSError:
                log.exception("could not hand this worker's metrics to %s", self.store.directory)
        if self._log_fields:
            logger.remove_context_provider(tracing.trace_log_fields)
            self._log_fields = False
        provider, self.tracer_provider = self.tracer_provider, None
        if provider is not None and hasattr(provider, "force_flush"):
            provider.force_flush()

    async def _flush_forever(self) -> None:
        assert self.store is not None
        interval = float(self.config["metrics_flush_interval"])
        while True:
            try:
                self.store.write(self.collect())
            except OSError:
                log.exception("could not write the metrics snapshot to %s", self.store.path)
            await asyncio.sleep(interval)

    # -- metrics --------------------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        """This process's families: built-ins, then prometheus_client's default registry
        (process and GC collectors, user metrics)."""
        yield from self.registry.collect()
        yield from prometheus_client.REGISTRY.collect()

    def collect_all(self) -> Iterator[Metric]:
        """Every worker's families merged (this process's alone without ``metrics_dir``)."""
        if self.store is None:
            yield from self.collect()
        else:
            yield from self.store.collect(own=list(self.collect()))

    def scrape(self, accept: str | None = None) -> tuple[bytes, str]:
        """The ``/metrics`` body and content type (OpenMetrics when ``accept`` asks for it)."""
        return render(self.collect_all, accept)

    # -- health ---------------------------------------------------------------------------

    def liveness(self) -> tuple[int, bytes]:
        return liveness()

    async def readiness(self) -> tuple[int, bytes]:
        return await readiness(self.app, float(self.config["readiness_timeout"]))
