"""Pool statistics of every live `flowcoro.core` pool, read at scrape time (no per-acquire cost).

Names follow OpenTelemetry's database-client semantic conventions where one exists
(``db.client.connection.count`` with ``state="idle"|"used"``, ``.max``, ``.pending_requests``)
translated to Prometheus style, with the pool's name in ``pool_name``; the rest of
``pool.statistics()`` is exposed as ``flowcoro_pool_<field>``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

__all__ = ["PoolCollector", "core_pools"]

# statistics() fields that only grow: exposed as counters (``_total``).
_COUNTERS = {
    "created": "Resources created by the pool",
    "closed": "Resources closed by the pool",
    "acquisitions": "Successful acquisitions",
    "timeouts": "Acquisitions that timed out",
    "discarded": "Resources discarded as broken",
}


def core_pools() -> Iterable[Any]:
    """The live pools of `flowcoro.core` (``Pool.instances()``), or none before it exists."""
    try:
        from flowcoro.core import Pool  # type: ignore[attr-defined,unused-ignore]
    except ImportError:  # pragma: no cover - depends on which core is installed
        return ()
    return list(Pool.instances())


def _fields(stats: Any) -> dict[str, Any]:
    if hasattr(stats, "_asdict"):
        return dict(stats._asdict())
    if isinstance(stats, dict):
        return dict(stats)
    return {k: getattr(stats, k) for k in dir(stats) if not k.startswith("_")}


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and not (isinstance(value, float) and math.isnan(value)):
        return float(value)
    return None


# Gauges that do not add up across pools sharing a name: the largest is shown.
_MAXED = ("reuse_ratio", "wait_", "min_size", "max_size")


class PoolCollector:
    """A prometheus_client collector over ``pools()`` (default: every core pool). Pools that
    share a name are added together (ratios and wait percentiles: the largest)."""

    def __init__(self, pools: Callable[[], Iterable[Any]] = core_pools) -> None:
        self._pools = pools

    def _gather(self) -> dict[str, dict[str, float]]:
        by_name: dict[str, dict[str, float]] = {}
        for pool in self._pools():
            name = str(getattr(pool, "name", "pool"))
            try:
                fields = _fields(pool.statistics())
            except Exception:
                continue
            fields.setdefault("max_size", getattr(pool, "max_size", None))
            known = by_name.setdefault(name, {})
            for field, raw in fields.items():
                value = _number(raw)
                if value is None:
                    continue
                if field not in known:
                    known[field] = value
                elif field.startswith(_MAXED):
                    known[field] = max(known[field], value)
                else:
                    known[field] += value
        return by_name

    def collect(self) -> Iterator[Metric]:
        count = GaugeMetricFamily(
            "db_client_connection_count",
            "Resources of the pool by state (used = lent out, idle = ready in the pool)",
            labels=["pool_name", "state"],
        )
        maximum = GaugeMetricFamily(
            "db_client_connection_max", "Most resources the pool may hold", labels=["pool_name"]
        )
        pending = GaugeMetricFamily(
            "db_client_connection_pending_requests",
            "Acquisitions waiting for a resource",
            labels=["pool_name"],
        )
        counters: dict[str, CounterMetricFamily] = {}
        gauges: dict[str, GaugeMetricFamily] = {}
        for name, fields in sorted(self._gather().items()):
            if "in_use" in fields:
                count.add_metric([name, "used"], fields["in_use"])
            if "idle" in fields:
                count.add_metric([name, "idle"], fields["idle"])
            if "max_size" in fields:
                maximum.add_metric([name], fields["max_size"])
            if "waiting" in fields:
                pending.add_metric([name], fields["waiting"])
            for field, value in fields.items():
                if field in _COUNTERS:
                    family = counters.get(field)
                    if family is None:
                        family = counters[field] = CounterMetricFamily(
                            f"flowcoro_pool_{field}", _COUNTERS[field], labels=["pool_name"]
                        )
                    family.add_metric([name], value)
                else:
                    gfamily = gauges.get(field)
                    if gfamily is None:
                        gfamily = gauges[field] = GaugeMetricFamily(
                            f"flowcoro_pool_{field}",
                            f"Pool statistic {field!r} (see Pool.statistics())",
                            labels=["pool_name"],
                        )
                    gfamily.add_metric([name], value)
        yield count
        yield maximum
        yield pending
        yield from counters.values()
        yield from gauges.values()
