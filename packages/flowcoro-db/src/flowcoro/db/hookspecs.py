"""flowcoro-db's own hook specifications (registered through ``flowcoro_add_hookspecs``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowcoro.core.hookspecs import hookspec

if TYPE_CHECKING:
    from flowcoro.db.abc import Driver
    from flowcoro.db.observers import QueryObserver


@hookspec
def flowcoro_db_drivers() -> list[type[Driver]]:
    """Return SQL driver classes, each with a unique ``PLUGIN_NAME`` and its URL ``SCHEMES``."""


@hookspec
def flowcoro_db_query_observers() -> list[QueryObserver]:
    """Return observers called around every SQL statement and Redis command (see
    `flowcoro.db.observers`). Asked once per `Database` / Redis client, when it is built."""
