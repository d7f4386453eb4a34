"""OpenTelemetry tracing: server spans for HTTP requests, client-span helpers, log fields.

Only the OpenTelemetry *API* is a dependency. With it alone, or with tracing off, every tracer
is a no-op and nothing of `HTTPTracing` is handed to flowcoro-http (zero cost per request).
With the SDK installed (extra ``sdk`` or ``otlp``) and tracing enabled, `configure_tracing`
builds a ``TracerProvider`` the standard way: resource from ``OTEL_SERVICE_NAME`` /
``OTEL_RESOURCE_ATTRIBUTES``, sampler from ``OTEL_TRACES_SAMPLER`` /
``OTEL_TRACES_SAMPLER_ARG`` (e.g. ``parentbased_traceidratio`` and ``0.1`` for 10% head
sampling), exporters from ``OTEL_TRACES_EXPORTER`` (``otlp``, ``console``, ``none``;
comma-separated), batched off the event loop by the SDK's ``BatchSpanProcessor``.

Context propagation: the OpenTelemetry context lives in a context variable, so it follows
``asyncio`` tasks (``scope()`` children) and ``to_thread`` offloads that copy the context.
Incoming ``traceparent`` / ``tracestate`` (and ``baggage``) are extracted with the globally
configured propagator (``OTEL_PROPAGATORS``, W3C trace context by default).
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import SpanKind, Status, StatusCode

from flowcoro.observe._version import __version__
from flowcoro.observe.errors import ObserveError

__all__ = [
    "HTTPTracing",
    "TracingMiddleware",
    "client_span",
    "configure_tracing",
    "extract_context",
    "sdk_available",
    "trace_log_fields",
    "tracer",
    "tracing_active",
]

_TRACER_NAME = "flowcoro.observe"

# Set while a request the head sampler dropped is handled: client spans are skipped at once (a
# ParentBased sampler would drop them anyway, after paying for a span each).
_UNSAMPLED: ContextVar[bool] = ContextVar("flowcoro_observe_unsampled", default=False)
_NOOP_SPAN = trace.NonRecordingSpan(trace.INVALID_SPAN_CONTEXT)
_UNRESOLVED: Any = object()


def tracer() -> trace.Tracer:
    return trace.get_tracer(_TRACER_NAME, __version__)


def sdk_available() -> bool:
    try:
        import opentelemetry.sdk.trace  # noqa: F401
    except ImportError:
        return False
    return True


def tracing_active() -> bool:
    """True when the global tracer provider records spans (an SDK provider is installed)."""
    provider = trace.get_tracer_provider()
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


def configure_tracing(exporters: str | None = None) -> Any:
    """Install an SDK ``TracerProvider`` configured from the ``OTEL_*`` variables and return it
    (call ``shutdown()`` on it to flush). Returns the existing provider when one is already
    installed, and None when ``OTEL_SDK_DISABLED=true``. ``exporters`` overrides
    ``OTEL_TRACES_EXPORTER`` (default ``otlp``)."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if tracing_active():
        return trace.get_tracer_provider()
    if not sdk_available():
        raise ObserveError(
            "tracing is enabled but opentelemetry-sdk is not installed: "
            "pip install 'flowcoro-observe[otlp]'"
        )
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    from flowcoro.observe._sampling import PresetIdGenerator

    provider = TracerProvider(resource=Resource.create(), id_generator=PresetIdGenerator())
    names = exporters if exporters is not None else os.environ.get("OTEL_TRACES_EXPORTER", "otlp")
    for name in (n.strip().lower() for n in names.split(",")):
        if name in ("", "none"):
            continue
        if name == "console":
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        elif name == "otlp":
            try:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[import-not-found,unused-ignore]
                    OTLPSpanExporter,
                )
            except ImportError as exc:
                raise ObserveError(
                    "OTEL_TRACES_EXPORTER=otlp needs opentelemetry-exporter-otlp-proto-http: "
                    "pip install 'flowcoro-observe[otlp]'"
                ) from exc
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        else:
            raise ObserveError(
                f"OTEL_TRACES_EXPORTER: unknown exporter {name!r} (use otlp, console or none)"
            )
    trace.set_tracer_provider(provider)
    return provider


class _HeadersGetter(Getter[Any]):
    """Reads carrier headers from flowcoro's `Headers` (``get``/``getlist``) or any mapping."""

    def get(self, carrier: Any, key: str) -> list[str] | None:
        getlist = getattr(carrier, "getlist", None)
        if getlist is not None:
            values: list[str] = getlist(key)
            return values or None
        value = carrier.get(key)
        if value is None:  # a plain mapping with other capitalisation
            value = next((v for k, v in carrier.items() if k.lower() == key), None)
        return None if value is None else [value]

    def keys(self, carrier: Any) -> list[str]:
        return list(carrier.keys())


_GETTER = _HeadersGetter()


def extract_context(headers: Any) -> otel_context.Context:
    """The remote parent (W3C ``traceparent``/``tracestate``, baggage) carried by ``headers``."""
    return propagate.extract(headers, getter=_GETTER)


def trace_log_fields() -> dict[str, str]:
    """``{"trace_id": ..., "span_id": ...}`` (hex) of the current span, or ``{}`` with none."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return {}
    return {"trace_id": f"{ctx.trace_id:032x}", "span_id": f"{ctx.span_id:016x}"}


@contextmanager
def client_span(
    name: str, attributes: dict[str, Any] | None = None, kind: SpanKind = SpanKind.CLIENT
) -> Iterator[trace.Span]:
    """A client span (DB query, Redis command, outbound call) as the current span; exceptions
    are recorded and set the ERROR status with ``error.type``. Inside a request the head sampler
    dropped, nothing is created (a non-recording span is yielded)."""
    if _UNSAMPLED.get():
        yield _NOOP_SPAN
        return
    with tracer().start_as_current_span(
        name,
        kind=kind,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except BaseException as exc:
            if span.is_recording():
                span.record_exception(exc)
                span.set_attribute("error.type", type(exc).__qualname__)
                span.set_status(Status(StatusCode.ERROR, str(exc)))
            raise


_W3C_HEADERS = frozenset((b"traceparent", b"tracestate", b"baggage"))
_DEFAULT_PROPAGATION: list[Any] = [None, False]  # [the global propagator, is it the default]


def _default_propagation() -> bool:
    """The global propagator is OpenTelemetry's default (W3C trace context and baggage): then a
    request with none of `_W3C_HEADERS` carries no context, and extracting can be skipped."""
    propagator = propagate.get_global_textmap()
    if propagator is not _DEFAULT_PROPAGATION[0]:
        from opentelemetry.baggage.propagation import W3CBaggagePropagator
        from opentelemetry.propagators.composite import CompositePropagator
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        inner = getattr(propagator, "_propagators", None)
        default = {TraceContextTextMapPropagator, W3CBaggagePropagator}
        _DEFAULT_PROPAGATION[:] = [
            propagator,
            isinstance(propagator, CompositePropagator)
            and isinstance(inner, list | tuple)
            and len(inner) == 2
            and {type(p) for p in inner} == default,
        ]
    return bool(_DEFAULT_PROPAGATION[1])


def _traceparent(request: Any) -> bytes | None:
    """The raw ``traceparent`` value of a request that is not flowcoro-http's (whose parser
    keeps it aside as ``request.traceparent``): its parsed header pairs if it has them (building
    ``request.headers`` costs ten times a scan), else its headers."""
    raw = getattr(request, "_raw_headers", None)
    if type(raw) is not list:
        value = request.headers.get("traceparent")
        return None if value is None else value.encode("latin-1")
    for name, value in raw:
        if name == b"traceparent":
            return value  # type: ignore[no-any-return]
    return None


def _http_request_type() -> type | None:
    try:
        from flowcoro.http.request import Request
    except ImportError:  # pragma: no cover - the middleware is only added with flowcoro-http
        return None
    return Request


def _status_of(response: Any) -> int:
    for attr in ("status", "status_code"):
        value = getattr(response, attr, None)
        if isinstance(value, int):
            return value
    return 0


class HTTPTracing:
    """A server span per sampled HTTP request, named ``"{method} {route}"``, with the stable HTTP
    semantic-convention attributes, the remote parent extracted from the headers, and current
    inside the handler (so DB spans become its children). Sampled requests also leave an
    exemplar (their trace id) in the latency histogram bucket they fell in.

    flowcoro-observe hands `request_entered` to flowcoro-http as a request observer's hook
    (``RequestObserver.request_entered``), called before each handler to decide the head
    sample. A dropped request costs that one call and nothing else (no middleware layer, no
    coroutine, no context write: `bind_server` presets the "unsampled" flag for every request);
    a kept one gets `_traced`, which the server runs in the request's context around its final
    response."""

    def __init__(self, metrics: Any = None) -> None:
        from flowcoro.observe.httpmetrics import Countdown

        self._tracer = tracer()
        self._metrics = metrics
        self._head: Any = _UNRESOLVED
        # With the head sampler, what starts kept requests' spans without the SDK's start_span
        # (flowcoro.observe._serverspan); None: start_span.
        self._starter: Any = None
        # flowcoro-http's Request, whose parser keeps the traceparent header aside; any other
        # request type goes through `_traceparent`.
        self._request_type: Any = _http_request_type()
        # True once bound to a flowcoro-http server: its requests start "unsampled" (preset
        # in their context), so a dropped request sets nothing; otherwise (the middleware) a
        # dropped request sets the flag itself.
        self._preset = False
        #: The per-request hook: None for a request the head sampler drops, else `_traced`.
        #: A dropped request without a remote parent is counted down in C (`Countdown`: at 1%
        #: sampling that is 99% of requests, and all that tracing costs them); every other
        #: request is decided by `_decide`.
        self._countdown = Countdown(self._decide)
        # Handed over as the bound method: the interpreter calls a builtin method taking one
        # argument on a specialised path, an instance with __call__ on the generic one.
        self.request_entered: Callable[[Any], Any] = self._countdown.decide

    def bind_server(self, state: Any) -> None:
        """flowcoro-http hands over each server this tracer observes: every request of it
        starts with the "unsampled" flag set, at no cost per request; `_traced` clears it for
        the requests it keeps."""
        state.preset(_UNSAMPLED, True)
        self._preset = True

    def _head_sampler(self) -> Any:
        # Resolved on the first request: the provider is installed when the app starts.
        provider = trace.get_tracer_provider()
        head = None
        # Only W3C parents are read before the SDK: another propagator (OTEL_PROPAGATORS=b3,
        # say) may carry a sampled parent in other headers, so then the SDK decides each request.
        if sdk_available() and tracing_active() and _default_propagation():
            from flowcoro.observe._sampling import HeadSampler

            head = HeadSampler.for_provider(provider)
            if head is not None:
                from flowcoro.observe._serverspan import SpanStarter

                self._tracer = provider.get_tracer(_TRACER_NAME, __version__)
                self._starter = SpanStarter.for_tracer(self._tracer)
                self._countdown.remaining = head.gap()
        self._head = head
        return head

    def _decide(self, request: Any) -> Callable[[Any, Awaitable[Any]], Awaitable[Any]] | None:
        """`request_entered` for what the countdown does not settle: the kept request (its
        trace id preset for the SDK, the next gap drawn), a remote parent (followed under
        ParentBased), the first request (the sampler resolved), or no head sampler at all (the
        SDK decides every request)."""
        head = self._head
        if head is _UNRESOLVED:
            head = self._head_sampler()
        if head is None:
            return self._traced
        if type(request) is self._request_type:
            parent = request.traceparent  # kept aside by flowcoro-http's parser
        else:
            parent = _traceparent(request)
        if parent is None:
            countdown: Any = self._countdown
            if countdown.remaining > 1:  # the first request, or not flowcoro-http's
                countdown.remaining -= 1
                return None
            countdown.remaining = head.keep()
            return self._root
        if not head.parent_based:
            return self._traced  # the ratio decides on the parent's trace id: the SDK's call
        if len(parent) == 55 and parent[-1] in b"02468ace":
            return None  # a valid W3C parent whose flags say "not sampled", under ParentBased
        return self._child

    def _root(self, request: Any, respond: Awaitable[Any]) -> Awaitable[Any]:
        """`_traced` for a root request the head sampler kept (its trace id preset)."""
        return self._traced(request, respond, self._starter, True)

    def _child(self, request: Any, respond: Awaitable[Any]) -> Awaitable[Any]:
        """`_traced` for a request whose W3C parent says "sampled", under ParentBased."""
        return self._traced(request, respond, self._starter, False)

    async def _traced(
        self, request: Any, respond: Awaitable[Any], starter: Any = None, root: bool = False
    ) -> Any:
        """The server span around ``respond``: from ``starter`` (a `SpanStarter`) when given
        and able to, else from the SDK's ``start_span``, which then decides too."""
        if _UNSAMPLED.get():
            _UNSAMPLED.set(False)
        method = request.method
        route = getattr(request, "route", None)
        attributes: dict[str, Any] = {
            "http.request.method": method,
            "url.path": request.path,
            "url.scheme": getattr(request, "scheme", None) or "http",
        }
        if route:
            attributes["http.route"] = route
        version = getattr(request, "http_version", None)
        if version:
            attributes["network.protocol.version"] = str(version)
        client = getattr(request, "client", None)
        if client:
            attributes["client.address"] = str(client[0] if isinstance(client, tuple) else client)
        headers: Any = None
        if type(request) is self._request_type:
            # flowcoro-http's parsed pairs, read directly (building request.headers would cost
            # more than the rest of this); the propagator runs only if it has something to read.
            agent = host = None
            carried = not _default_propagation()
            for name, value in request._raw_headers:
                if name == b"user-agent":
                    agent = value.decode("latin-1")
                elif name == b"host":
                    host = value.decode("latin-1")
                elif name in _W3C_HEADERS:
                    carried = True
            if carried:
                headers = request.headers
        else:
            headers = request.headers
            agent = headers.get("user-agent")
            host = headers.get("host")
        if agent:
            attributes["user_agent.original"] = agent
        if host:
            attributes["server.address"] = host.rsplit(":", 1)[0] if "]" not in host else host
        parent = None if headers is None else extract_context(headers)
        name = f"{method} {route}" if route else method
        span = None
        if starter is not None and starter.enabled():
            span = starter.start(name, parent, attributes, root)
        if span is None:
            span = self._tracer.start_span(
                name, context=parent, kind=SpanKind.SERVER, attributes=attributes
            )
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        started = time.perf_counter()
        status = 0
        try:
            response = await respond
            status = _status_of(response)
            if status >= 500:
                # flowcoro-http keeps the exception that became this response on the request.
                error = getattr(request, "exception", None)
                if isinstance(error, BaseException):
                    span.record_exception(error)
                    span.set_attribute("error.type", type(error).__qualname__)
                    span.set_status(Status(StatusCode.ERROR, str(error)))
                else:
                    span.set_attribute("error.type", str(status))
                    span.set_status(Status(StatusCode.ERROR))
            return response
        except BaseException as exc:
            # Under flowcoro-http `respond` answers every Exception itself; through the
            # middleware an unhandled one becomes the 500 at the edge (a cancellation answers
            # nothing).
            if isinstance(exc, Exception):
                status = 500
            span.record_exception(exc)
            span.set_attribute("error.type", type(exc).__qualname__)
            span.set_status(Status(StatusCode.ERROR, str(exc)))
            raise
        finally:
            late_route = getattr(request, "route", None)
            if late_route and late_route != route:
                # Routing ran inside call_next: name the span after the template now.
                route = late_route
                span.set_attribute("http.route", route)
                span.update_name(f"{method} {route}")
            if status:
                span.set_attribute("http.response.status_code", status)
            ctx = span.get_span_context()
            if self._metrics is not None and status and ctx.trace_flags.sampled:
                self._metrics.record_exemplar(
                    route, method, status, time.perf_counter() - started, ctx.trace_id
                )
            if not self._preset:
                # Under flowcoro-http this runs in the request's own context, which ends with
                # it: nothing to restore. (As a middleware it shares its caller's.)
                otel_context.detach(token)
            span.end()


class TracingMiddleware(HTTPTracing):
    """`HTTPTracing` as a middleware (``async def mw(request, call_next)``), for a stack that has
    no request observers: flowcoro-observe itself uses the observer hook, which costs a dropped
    request less (no middleware layer around every route)."""

    def __call__(self, request: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Awaitable[Any]:
        """Not a coroutine: a dropped request is handed straight on (``call_next(request)``'s
        own awaitable, no frame of this middleware in between)."""
        wrap = self.request_entered(request)
        if wrap is None:
            if not self._preset:
                _UNSAMPLED.set(True)  # in this request's context; it ends with the request
            return call_next(request)
        traced: Awaitable[Any] = wrap(request, call_next(request))
        return traced
