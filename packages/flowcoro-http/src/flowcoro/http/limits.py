"""`HTTPLimits`: every bound of the HTTP server, with its default (see the README table)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

__all__ = ["HTTPLimits"]


@dataclass(frozen=True, slots=True)
class HTTPLimits:
    """Bounds of one server; each exceeded bound has a definite answer.

    - ``max_header_size`` (16 KiB): request line + header block, checked while it arrives -> 431.
    - ``max_header_count`` (100): header fields per request -> 431.
    - ``max_body_size`` (1 MiB): request body, app-wide (a route may set its own) -> 413, checked
      against ``Content-Length`` before reading and while a chunked body streams in.
    - ``max_concurrency`` (1024): requests handled at once by the process -> 503 + Retry-After.
    - ``retry_after`` (1): seconds advertised in the 503's ``Retry-After``.
    - ``max_pipeline`` (32): requests parsed ahead of the one being handled, per connection;
      reading pauses at this depth (so at most one read's worth more is held).
    - ``max_keepalive_requests`` (10000): requests on one connection before it is closed.
    - ``keepalive_timeout`` (5 s): idle time between requests before the connection closes.
    - ``header_timeout`` (10 s): time from a request's first byte to its complete header block
      (slowloris) -> the connection is closed (408 when nothing is in flight).
    - ``body_timeout`` (60 s): time to receive the whole request body once its headers arrived
      (slow-body attacks) -> 408 and the connection is closed.
    - ``read_buffer_high`` (256 KiB) / ``read_buffer_low`` (64 KiB): unread request body bytes
      at which reading from the socket pauses and resumes (flow control towards a fast sender).
    - ``max_form_fields`` (1000), ``max_form_files`` (100): form parsing bounds -> 413.
    - ``cancel_on_disconnect`` (True): cancel the handler when its client goes away.
    """

    max_header_size: int = 16 * 1024
    max_header_count: int = 100
    max_body_size: int = 1024 * 1024
    max_concurrency: int = 1024
    retry_after: int = 1
    max_pipeline: int = 32
    max_keepalive_requests: int = 10_000
    keepalive_timeout: float = 5.0
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    read_buffer_high: int = 256 * 1024
    read_buffer_low: int = 64 * 1024
    max_form_fields: int = 1000
    max_form_files: int = 100
    cancel_on_disconnect: bool = True

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "cancel_on_disconnect":
                if not isinstance(value, bool):
                    raise TypeError(f"{f.name}: expected a bool, got {value!r}")
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"{f.name}: expected a number, got {value!r}")
            if value <= 0:
                raise ValueError(f"{f.name}: must be positive, got {value!r}")
        if self.read_buffer_low > self.read_buffer_high:
            raise ValueError("read_buffer_low: must not exceed read_buffer_high")

    def replace(self, **changes: Any) -> HTTPLimits:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        for key in changes:
            if key not in values:
                raise TypeError(f"HTTPLimits has no field {key!r}")
        values.update(changes)
        return HTTPLimits(**values)
