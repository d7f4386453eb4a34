"""flowcoro-db's hook implementations (drivers, the Redis pub/sub broker, CLI commands)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

from flowcoro.core import hookimpl

if TYPE_CHECKING:
    from flowcoro.core.abc import Command, PubSubBroker
    from flowcoro.core.settings import Setting
    from flowcoro.db.abc import Driver


@hookimpl
def flowcoro_add_hookspecs(pm: pluggy.PluginManager) -> None:
    import flowcoro.db.hookspecs

    pm.add_hookspecs(flowcoro.db.hookspecs)


@hookimpl
def flowcoro_db_drivers() -> list[type[Driver]]:
    # The classes import their client libraries lazily, on first connect.
    from flowcoro.db.drivers.mysql import MySQLDriver
    from flowcoro.db.drivers.postgres import PostgresDriver
    from flowcoro.db.drivers.sqlite import SQLiteDriver

    return [PostgresDriver, MySQLDriver, SQLiteDriver]


@hookimpl
def flowcoro_cli_commands() -> list[Command]:
    from flowcoro.db.migrate import DBCommand

    return [DBCommand()]


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


@hookimpl(specname="flowcoro_settings")
def sql_settings() -> list[Setting]:
    from flowcoro.core.settings import Setting

    return [
        Setting(
            "db_url",
            str,
            "sqlite:///flowcoro.db",
            "SQL database URL: postgresql://, mysql:// (mariadb://) or sqlite:///path",
        )
    ]
