"""Hook specifications flowcoro-net adds (registered by ``flowcoro.net.plugin``).

Called at wiring time only: `start_server` asks once, when the server starts, and then calls
the returned objects directly; a server with no observers does no per-connection work for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowcoro.core.hookspecs import hookspec

if TYPE_CHECKING:
    from flowcoro.net.server import ConnectionObserver


@hookspec
def flowcoro_net_connection_observers() -> list[ConnectionObserver]:
    """Return observers told about every accepted connection (``connection_opened(protocol)``,
    ``connection_closed(protocol)``) of every server started with ``observers=None``."""


@hookspec
def flowcoro_net_workers_starting(workers: int) -> None:
    """Called once in the supervisor of ``run_server(workers=N)``, N > 1, before it forks the
    workers (e.g. to prepare state they share, such as a metrics directory)."""
