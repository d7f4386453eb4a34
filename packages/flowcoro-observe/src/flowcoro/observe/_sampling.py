"""Head sampling decided before any SDK work (imported only when opentelemetry-sdk is).

The SDK's ``start_span`` costs about 10 µs even for a span it then drops (ids, sampler,
``SpanContext`` validation), so at 1% sampling 99% of requests would pay it for nothing. For the
SDK's standard samplers — ``TraceIdRatioBased``, ``ALWAYS_ON``/``ALWAYS_OFF``, and ``ParentBased``
around them with its default delegates — a root span is kept exactly when the low 64 bits of its
random trace id fall below the sampler's ``bound``: an independent draw per request with
probability ``p = bound / 2**64``. The tracer reproduces that process without a draw per
request: the gaps between kept requests of a Bernoulli(p) process are geometric, so one
geometric draw per *kept* request says how many to drop before the next (a dropped request costs
a decrement). A kept request gets a trace id whose low 64 bits are uniform below ``bound`` (so
its ids are distributed as the SDK's kept ids are) and hands it to the SDK through
`PresetIdGenerator`, whose own decision then agrees: the rate is exactly the configured one.
"""

from __future__ import annotations

import math
import random
import sys
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
_getrandbits = random.getrandbits
_LOW128 = (1 << 128) - 1


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
    __slots__ = ("_below", "_log_q", "_p", "bound", "ids", "parent_based")

    def __init__(self, bound: int, parent_based: bool, ids: PresetIdGenerator) -> None:
        self.bound = bound
        self._below = min(bound, _LIMIT + 1)  # the kept ids' low 64 bits are below this
        self.parent_based = parent_based
        self.ids = ids
        # p of the Bernoulli process, and log(1 - p) for the geometric gaps.
        self._p = min(1.0, bound / 2.0**64)
        self._log_q = math.log1p(-self._p) if self._p < 1.0 else 0.0

    def gap(self) -> int:
        """Requests until the next kept one, the kept one included: geometric on 1, 2, ..."""
        if self._p >= 1.0:
            return 1
        if self._p <= 0.0:
            return sys.maxsize
        u = 1.0 - random.random()  # (0, 1]
        return 1 + min(int(math.log(u) / self._log_q), sys.maxsize - 1)

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

    def keep(self) -> int:
        """This root request is kept: preset its trace id; returns the next `gap`."""
        # One draw of 192 bits: the top 64 as the id's high half, the other 128 scaled below
        # the bound for its low half (multiply and shift: each value's probability within
        # 2**-64 of uniform, and cheaper than randrange).
        bits = _getrandbits(192)
        low = ((bits & _LOW128) * self._below) >> 128
        self.ids.preset((bits >> 128 << 64 | low) or 1)
        return self.gap()
