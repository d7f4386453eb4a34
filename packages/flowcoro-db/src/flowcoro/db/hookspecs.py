"""flowcoro-db's own hook specifications (registered through ``flowcoro_add_hookspecs``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowcoro.core.hookspecs import hookspec

if TYPE_CHECKING:
    from flowcoro.db.abc import Driver


@hookspec
def flowcoro_db_drivers() -> list[type[Driver]]:
    """Return SQL driver classes, each with a unique ``PLUGIN_NAME`` and its URL ``SCHEMES``."""
