"""flowcoro-db's hook implementations (drivers, the Redis pub/sub broker, CLI commands)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowcoro.core import hookimpl

if TYPE_CHECKING:
    from flowcoro.core.abc import PubSubBroker
    from flowcoro.core.settings import Setting


@hookimpl
def flowcoro_pubsub_brokers() -> list[type[PubSubBroker]]:
    # Imported here so that flowcoro.db.plugin loads without the `redis` extra installed.
    try:
        from flowcoro.db.redis.pubsub import RedisBroker
    except ImportError:  # pragma: no cover - only without the extra's dependencies
        return []
    return [RedisBroker]


@hookimpl(specname="flowcoro_settings")
def redis_settings() -> list[Setting]:
    from flowcoro.core.settings import Setting

    return [Setting("redis_url", str, None, "Redis URL: redis://, rediss:// or unix://")]
