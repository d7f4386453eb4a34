"""Render metric families as Prometheus text (0.0.4) or OpenMetrics (with exemplars)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import exposition as text_format
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import exposition as openmetrics_format

__all__ = ["OPENMETRICS_CONTENT_TYPE", "TEXT_CONTENT_TYPE", "render", "wants_openmetrics"]

TEXT_CONTENT_TYPE = text_format.CONTENT_TYPE_LATEST
OPENMETRICS_CONTENT_TYPE = openmetrics_format.CONTENT_TYPE_LATEST


class _Families:
    """The one-shot registry shape prometheus_client's generators expect."""

    def __init__(self, collect: Callable[[], Iterable[Metric]]) -> None:
        self._collect = collect

    def collect(self) -> Iterator[Metric]:
        yield from self._collect()


def wants_openmetrics(accept: str | None) -> bool:
    """True when the scraper's ``Accept`` header asks for OpenMetrics (Prometheus does, and only
    then are exemplars shown)."""
    return bool(accept) and "application/openmetrics-text" in accept  # type: ignore[operator]


def render(collect: Callable[[], Iterable[Metric]], accept: str | None = None) -> tuple[bytes, str]:
    """``(body, content type)`` for the families ``collect()`` yields, in the format ``accept``
    asks for."""
    families = _Families(collect)
    if wants_openmetrics(accept):
        return openmetrics_format.generate_latest(families), OPENMETRICS_CONTENT_TYPE  # type: ignore[no-untyped-call,arg-type,unused-ignore]
    return text_format.generate_latest(families), TEXT_CONTENT_TYPE  # type: ignore[no-untyped-call,arg-type,unused-ignore]
