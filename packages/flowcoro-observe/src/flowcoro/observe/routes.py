"""``/metrics``, ``/healthz`` and ``/readyz`` as flowcoro-http routes (imported only when
flowcoro-http is installed: the ``http`` extra)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowcoro.observe.health import JSON_CONTENT_TYPE

if TYPE_CHECKING:
    from flowcoro.observe.observe import Observe

__all__ = ["http_routes"]


def http_routes(observe: Observe) -> list[Any]:
    """The three routes, bound to ``observe``; paths from its settings."""
    from flowcoro.http.response import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
        Response,
    )
    from flowcoro.http.routing import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
        Route,
    )

    async def metrics(request: Any) -> Response:
        body, content_type = observe.scrape(request.headers.get("accept"))
        return Response(body, media_type=content_type)

    async def healthz(request: Any) -> Response:
        status, body = observe.liveness()
        return Response(body, status=status, media_type=JSON_CONTENT_TYPE)

    async def readyz(request: Any) -> Response:
        status, body = await observe.readiness()
        return Response(body, status=status, media_type=JSON_CONTENT_TYPE)

    config = observe.config
    routes = [
        Route(config["health_path"], healthz, ("GET",), name="flowcoro-observe-healthz"),
        Route(config["ready_path"], readyz, ("GET",), name="flowcoro-observe-readyz"),
    ]
    if config["metrics_enabled"]:
        routes.append(
            Route(config["metrics_path"], metrics, ("GET",), name="flowcoro-observe-metrics")
        )
    return routes
