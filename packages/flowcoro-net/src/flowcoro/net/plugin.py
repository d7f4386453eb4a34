"""flowcoro-net's hook implementations."""

from __future__ import annotations

from typing import TYPE_CHECKING

import flowcoro.net.hookspecs
from flowcoro.core import hookimpl

if TYPE_CHECKING:
    import pluggy


@hookimpl
def flowcoro_add_hookspecs(pm: pluggy.PluginManager) -> None:
    pm.add_hookspecs(flowcoro.net.hookspecs)
