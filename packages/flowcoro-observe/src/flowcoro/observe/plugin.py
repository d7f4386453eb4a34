"""flowcoro-observe's hook implementations (wiring time only; nothing here runs per request).

The HTTP and net hooks are optional: without flowcoro-http or flowcoro-net installed their
specifications do not exist and these implementations are simply never called.
"""

from __future__ import annotations

from typing import Any

from flowcoro.core import hookimpl


@hookimpl
def flowcoro_settings() -> list[Any]:
    from flowcoro.observe.observe import SETTINGS

    return list(SETTINGS)


@hookimpl
def flowcoro_components(app: Any) -> list[Any]:
    from flowcoro.observe.observe import Observe
    from flowcoro.observe.server import MetricsServer

    observe = Observe.for_app(app)
    components: list[Any] = [observe]
    if int(observe.config["metrics_port"]) > 0:
        components.append(MetricsServer(observe))
    return components


@hookimpl(optionalhook=True)
def flowcoro_net_connection_observers() -> list[Any]:
    from flowcoro.observe.connections import CONNECTIONS

    return [CONNECTIONS]


@hookimpl(optionalhook=True)
def flowcoro_db_query_observers() -> list[Any]:
    """Proposed to flowcoro-db (see flowcoro.observe.dbmetrics for the interface)."""
    from flowcoro.observe.dbmetrics import QUERIES

    return [QUERIES]


@hookimpl(optionalhook=True)
def flowcoro_net_workers_starting(workers: int) -> None:
    """In the supervisor, before the workers fork: give them a fresh shared metrics directory
    so that one scrape sums every worker."""
    if workers > 1:
        from flowcoro.observe.multiprocess import prepare_worker_dir

        prepare_worker_dir()


@hookimpl(optionalhook=True)
def flowcoro_http_observers(app: Any) -> list[Any]:
    from flowcoro.observe.observe import Observe

    return Observe.for_app(app).http_observers()


@hookimpl(optionalhook=True)
def flowcoro_http_ws_observers(app: Any) -> list[Any]:
    from flowcoro.observe.observe import Observe

    observe = Observe.for_app(app)
    return [observe.ws] if observe.config["metrics_enabled"] else []


@hookimpl(optionalhook=True)
def flowcoro_http_routes(app: Any) -> list[Any]:
    from flowcoro.observe.observe import Observe

    observe = Observe.for_app(app)
    if int(observe.config["metrics_port"]) > 0:
        return []  # served on their own port by MetricsServer
    try:
        from flowcoro.observe.routes import http_routes

        return http_routes(observe)
    except ImportError:  # pragma: no cover - the hook exists only when flowcoro-http does
        return []
