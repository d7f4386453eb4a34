"""Errors of flowcoro-observe; `ObserveError` derives from the core's `FlowCoroError`."""

from __future__ import annotations

from flowcoro.core.errors import FlowCoroError

__all__ = ["ObserveError", "MetricError", "SharedStoreError"]


class ObserveError(FlowCoroError):
    """Base class of the errors flowcoro-observe raises."""


class MetricError(ObserveError, ValueError):
    """A metric was declared or used wrongly (bad name, duplicate, wrong label count)."""


class SharedStoreError(ObserveError, OSError):
    """The multi-worker metrics directory cannot be used (not writable, not a directory)."""
