"""Head sampling decided before any SDK work (imported only when opentelemetry-sdk is).

The SDK's ``start_span`` costs about 10 µs even for a span it then drops (ids, sampler,
``SpanContext`` validation), so at 1% sampling 99% of requests would pay it for nothing. For the
SDK's standard samplers — ``TraceIdRatioBased``, ``ALWAYS_ON``/``ALWAYS_OFF``, and ``ParentBased``
around them with its default delegates — the decision for a root span depends only on the trace
id, so the middleware draws the trace id itself and applies the same rule. A dropped request then
costs a random draw; a sampled one hands its trace id to the SDK through `PresetIdGenerator`, so
the SDK's own decision agrees and the sampling rate stays exactly the configured one.
"""

from __future__ import annotations

import random
import threading
from typing import Any

from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    TraceIdRatioBased,
)

__all__ = ["HeadSampler", "PresetIdGenerator"]

_LIMIT = TraceIdRatioBased.TRACE_ID_LIMIT


class PresetIdGenerator(RandomIdGenerator):
    """Random ids, except that the next trace id of this thread may be given beforehand."""

    def __init__(self) -> None:
        self._local = threading.local()

    def preset(self, trace_id: int) -> None:
        self._local.trace_id = trace_id

    def generate_trace_id(self) -> int:
        trace_id: int = getattr(self._local, "trace_id", 0)
        if trace_id:
            self._local.trace_id = 0
            return trace_id
        return super().generate_trace_id()


def _default_delegates(sampler: ParentBased) -> bool:
    return (
        sampler._remote_parent_sampled is ALWAYS_ON
        and sampler._local_parent_sampled is ALWAYS_ON
        and sampler._remote_parent_not_sampled is ALWAYS_OFF
        and sampler._local_parent_not_sampled is ALWAYS_OFF
    )


class HeadSampler:
    __slots__ = ("bound", "ids", "parent_based")

    def __init__(self, bound: int, parent_based: bool, ids: PresetIdGenerator) -> None:
        self.bound = bound
        self.parent_based = parent_based
        self.ids = ids

    @classmethod
    def for_provider(cls, provider: Any) -> HeadSampler | None:
        """The fast path for ``provider``, or None when its sampler or id generator is not one
        whose decision can be reproduced (then every request takes the SDK's path)."""
        ids = getattr(provider, "id_generator", None)
        sampler: Any = getattr(provider, "sampler", None)
        if not isinstance(ids, PresetIdGenerator):
            return None
        parent_based = isinstance(sampler, ParentBased)
        if parent_based:
            if not _default_delegates(sampler):
                return None
            sampler = sampler._root
        if sampler is ALWAYS_ON:
            bound = _LIMIT + 1
        elif sampler is ALWAYS_OFF:
            bound = 0
        elif isinstance(sampler, TraceIdRatioBased):
            bound = sampler.bound
        else:
            return None
        return cls(bound, parent_based, ids)

    def root(self) -> bool:
        """Decide a root request; when sampled, its trace id is preset for the SDK."""
        trace_id = random.getrandbits(128) or 1
        if trace_id & _LIMIT < self.bound:
            self.ids.preset(trace_id)
            return True
        return False
