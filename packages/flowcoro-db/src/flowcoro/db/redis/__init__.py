"""FlowCoro's Redis client: automatic pipelining, explicit pipelines and transactions, pub/sub
with resubscription, and stream consumer groups. Install with ``pip install flowcoro-db[redis]``.
"""

from __future__ import annotations

from flowcoro.db.redis._resp import HAVE_HIREDIS
from flowcoro.db.redis.client import Redis, Script
from flowcoro.db.redis.config import RedisConfig
from flowcoro.db.redis.connection import RedisStatistics
from flowcoro.db.redis.errors import (
    NoScriptError,
    RedisCommandError,
    RedisProtocolError,
    WatchError,
)
from flowcoro.db.redis.pipeline import Pipeline, Watch
from flowcoro.db.redis.pubsub import PubSub, RedisBroker, RedisSubscription
from flowcoro.db.redis.streams import AutoClaimResult, ConsumerGroup, PendingEntry, StreamEntry

__all__ = [
    "Redis",
    "RedisConfig",
    "RedisStatistics",
    "Script",
    "Pipeline",
    "Watch",
    "PubSub",
    "RedisBroker",
    "RedisSubscription",
    "ConsumerGroup",
    "StreamEntry",
    "PendingEntry",
    "AutoClaimResult",
    "RedisCommandError",
    "NoScriptError",
    "WatchError",
    "RedisProtocolError",
    "HAVE_HIREDIS",
]
