"""The kept request's server span, recorded without the SDK's ``start_span`` (imported only when
opentelemetry-sdk is).

Measured here, the SDK's ``start_span`` + ``end`` of a server span with its nine
semantic-convention attributes costs ~12 µs; most of it is work whose outcome is already known
for a request the head sampler kept (the sampler asked again, every attribute value cleaned and
copied under a lock, events and links lists built for none). `ServerSpan` records the same span
for ~2 µs: its ids come from the provider's own id generator (the trace id the head sampler
preset, or the remote parent's), the provider's span processors are told ``on_start`` and get a
real SDK ``ReadableSpan`` at ``on_end`` — the same fields the SDK's span would hand them, so
batching and exporters (OTLP, console) see no difference.

It implements the whole ``opentelemetry.trace.Span`` API, for handlers that add to the current
span: attributes, events and links set later are cleaned and bounded by the tracer's
``SpanLimits`` as the SDK does it (the attributes it starts with are built clean by the tracer).

Used only where the SDK's span would be recording and nothing else would differ: the head
sampler's fast path (a provider flowcoro-observe configured, a standard sampler), the tracer
enabled, and the SDK's own internal metrics (``OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED``) off,
since they count the spans the SDK starts. Otherwise `SpanStarter.for_tracer` returns None and
spans come from ``start_span``.
"""

from __future__ import annotations

import logging
import os
import traceback
from collections.abc import Mapping, Sequence
from time import time_ns
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits
from opentelemetry.sdk.util import BoundedList
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.status import Status, StatusCode
from opentelemetry.util import types

__all__ = ["ServerSpan", "SpanStarter"]

_log = logging.getLogger(__name__)
_UNSET = Status(StatusCode.UNSET)
# Attribute values the SDK's cleaning keeps as they are (no length limit set).
_PLAIN = frozenset((str, int, float, bool))
# W3C trace context level 2: the trace id's right part is random (set by the SDK when its id
# generator says so; SDKs before it have no such flag).
_RANDOM = int(getattr(TraceFlags, "RANDOM_TRACE_ID", 0))


class SpanStarter:
    """What a `ServerSpan` needs of the tracer it stands in for, read once."""

    __slots__ = ("_is_enabled", "flags", "ids", "limits", "processor", "resource", "scope")

    def __init__(self, tracer: Any, limits: SpanLimits, scope: InstrumentationScope) -> None:
        self._is_enabled = getattr(tracer, "_is_enabled", None)
        self.ids = tracer.id_generator
        self.processor = tracer.span_processor
        self.resource = tracer.resource
        self.limits = limits
        self.scope = scope
        random_ids = getattr(self.ids, "is_trace_id_random", None)
        random_flag = _RANDOM if random_ids is not None and random_ids() else 0
        self.flags = TraceFlags.SAMPLED | random_flag

    @classmethod
    def for_tracer(cls, tracer: Any) -> SpanStarter | None:
        """A starter for ``tracer`` (an SDK tracer), or None where its spans must come from its
        own ``start_span`` (see the module's docstring)."""
        if os.environ.get("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "").strip().lower() in (
            "true",
            "1",
        ):
            return None
        required = ("id_generator", "span_processor", "resource")
        if not all(hasattr(tracer, name) for name in required):
            return None
        limits = getattr(tracer, "_span_limits", None)
        scope = getattr(tracer, "_instrumentation_scope", None)
        if not isinstance(limits, SpanLimits) or not isinstance(scope, InstrumentationScope):
            return None
        return cls(tracer, limits, scope)

    def enabled(self) -> bool:
        """The tracer records (a tracer configurator may turn it off at run time)."""
        is_enabled = self._is_enabled
        return is_enabled is None or bool(is_enabled())

    def start(
        self,
        name: str,
        parent: otel_context.Context | None,
        attributes: dict[str, Any],
        root: bool,
    ) -> ServerSpan | None:
        """A started, sampled server span: a root (its trace id the one the head sampler
        preset; ``parent`` may still carry baggage), else a child of the remote span in
        ``parent`` (None when that context holds no valid span: the SDK decides such a
        request)."""
        if root:
            remote = None
            trace_id = self.ids.generate_trace_id()
            state = None
            flags = self.flags
        elif parent is None:
            return None
        else:
            remote = trace.get_current_span(parent).get_span_context()
            if not remote.is_valid:
                return None
            trace_id = remote.trace_id
            state = remote.trace_state
            flags = TraceFlags.SAMPLED | (remote.trace_flags & _RANDOM)
        context = SpanContext(
            trace_id, self.ids.generate_span_id(), False, TraceFlags(flags), state
        )
        if self.limits.max_span_attribute_length is not None:
            # Values may be cut: the SDK's cleaning applies to the tracer's own attributes too.
            attributes = BoundedAttributes(  # type: ignore[assignment]
                self.limits.max_span_attributes,
                attributes,
                immutable=False,
                max_value_len=self.limits.max_span_attribute_length,
            )
        span = ServerSpan(self, name, context, remote, attributes)
        self.processor.on_start(span, parent_context=parent)
        return span


class ServerSpan(trace.Span):
    """A recording ``SERVER`` span, handed to the span processors as a ``ReadableSpan`` when it
    ends (see the module's docstring)."""

    __slots__ = (
        "_attributes",
        "_context",
        "_end_time",
        "_events",
        "_links",
        "_name",
        "_parent",
        "_start_time",
        "_starter",
        "_status",
    )

    def __init__(
        self,
        starter: SpanStarter,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        attributes: dict[str, Any],
    ) -> None:
        self._starter = starter
        self._name = name
        self._context = context
        self._parent = parent
        self._attributes: Any = attributes  # a plain dict until set_attribute needs bounds
        self._events: Any = ()
        self._links: Any = ()
        self._status = _UNSET
        self._start_time = time_ns()
        self._end_time: int | None = None

    # -- the Span API ---------------------------------------------------------------------

    def get_span_context(self) -> SpanContext:
        return self._context

    def is_recording(self) -> bool:
        return self._end_time is None

    def set_attribute(self, key: str, value: types.AnyValue) -> None:
        if self._ended("set_attribute"):
            return
        attributes = self._attributes
        if type(attributes) is dict:
            limits = self._starter.limits
            if (
                type(value) in _PLAIN
                and type(key) is str
                and limits.max_span_attribute_length is None
                and (
                    key in attributes
                    or limits.max_span_attributes is None
                    or len(attributes) < limits.max_span_attributes
                )
            ):
                attributes[key] = value  # what cleaning would keep unchanged
                return
            attributes = self._attributes = BoundedAttributes(
                limits.max_span_attributes,
                attributes,
                immutable=False,
                max_value_len=limits.max_span_attribute_length,
            )
        attributes[key] = value  # cleaned (an invalid value is dropped with a warning)

    def set_attributes(self, attributes: Mapping[str, types.AnyValue]) -> None:
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def add_event(
        self,
        name: str,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
    ) -> None:
        if self._ended("add_event"):
            return
        limits = self._starter.limits
        if not self._events:
            self._events = BoundedList(limits.max_events)
        cleaned = BoundedAttributes(
            limits.max_event_attributes,
            attributes,
            max_value_len=limits.max_attribute_length,
        )
        self._events.append(Event(name, cleaned, time_ns() if timestamp is None else timestamp))

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        if self._ended("add_link"):
            return
        if not context.is_valid and not attributes and not context.trace_state:
            return  # nothing to link to (as the API allows)
        limits = self._starter.limits
        if not self._links:
            self._links = BoundedList(limits.max_links)
        cleaned = BoundedAttributes(
            limits.max_link_attributes, attributes, max_value_len=limits.max_attribute_length
        )
        self._links.append(Link(context, cleaned))

    def update_name(self, name: str) -> None:
        if not self._ended("update_name"):
            self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if self._ended("set_status") or self._status.status_code is StatusCode.OK:
            return  # OK is final
        if isinstance(status, Status):
            if description is not None:
                _log.warning("set_status: a description is ignored when a Status is given")
            self._status = status
        else:
            self._status = Status(status, description)

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        kind = type(exception)
        module = kind.__module__
        described: dict[str, Any] = {
            "exception.type": f"{module}.{kind.__qualname__}"
            if module and module != "builtins"
            else kind.__qualname__,
            "exception.message": str(exception),
            "exception.stacktrace": "".join(
                traceback.format_exception(kind, exception, exception.__traceback__)
            ),
            "exception.escaped": str(escaped),
        }
        if attributes:
            described.update(attributes)
        self.add_event("exception", described, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self._ended("end"):
            return
        self._end_time = time_ns() if end_time is None else end_time
        starter = self._starter
        starter.processor.on_end(
            ReadableSpan(
                name=self._name,
                context=self._context,
                parent=self._parent,
                resource=starter.resource,
                attributes=self._attributes,
                events=self._events,
                links=self._links,
                kind=SpanKind.SERVER,
                status=self._status,
                start_time=self._start_time,
                end_time=self._end_time,
                instrumentation_scope=starter.scope,
            )
        )

    def _ended(self, what: str) -> bool:
        if self._end_time is None:
            return False
        _log.warning("%s on an ended span (%s) is ignored", what, self._name)
        return True

    # -- read-only views, as an SDK span has them (for processors' on_start) ---------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def kind(self) -> SpanKind:
        return SpanKind.SERVER

    @property
    def parent(self) -> SpanContext | None:
        return self._parent

    @property
    def attributes(self) -> Mapping[str, Any]:
        return dict(self._attributes)

    @property
    def events(self) -> Sequence[Event]:
        return tuple(self._events)

    @property
    def start_time(self) -> int:
        return self._start_time

    def __repr__(self) -> str:
        return f"ServerSpan(name={self._name!r}, context={self._context!r})"
