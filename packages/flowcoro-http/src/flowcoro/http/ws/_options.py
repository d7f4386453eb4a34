"""`WSOptions`: the limits and behaviour of a WebSocket connection, shared by server and client."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

__all__ = ["WSOptions"]


@dataclass(frozen=True, slots=True)
class WSOptions:
    """Every option has a bounded default; ``None`` disables a timer or check where stated.

    - ``max_size``: largest incoming message (after decompression), in bytes; over it the
      connection is closed with 1009. Default 1 MiB.
    - ``max_queue``: received messages buffered before reading from the socket pauses (read
      backpressure); reading resumes when the handler has taken half of them. Default 16.
    - ``write_limit``: the transport's write-buffer high water mark, in bytes. Above it
      ``send()`` waits (write backpressure).
    - ``send_timeout``: slow-client policy. A ``send()`` that has waited this long for the
      write buffer to drain closes the connection (the socket is aborted: a close frame
      cannot reach a peer that does not read) and raises `WebSocketClosed` (code 1006).
      Default 10 s; None waits forever.
    - ``ping_interval`` / ``ping_timeout``: heartbeat. A ping every ``ping_interval`` seconds;
      a peer that has not answered within ``ping_timeout`` is closed with 1011. None disables.
    - ``close_timeout``: how long to wait for the peer's close frame / TCP close after ours.
    - ``compression``: ``"deflate"`` (permessage-deflate, default) or None.
    - ``subprotocols``: offered (client) or supported, by preference (server).
    - ``origins`` (server): accepted ``Origin`` values (``None`` inside the list accepts a
      request without one); None accepts any origin.
    """

    max_size: int | None = 2**20
    max_queue: int = 16
    write_limit: int = 64 * 1024
    send_timeout: float | None = 10.0
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    close_timeout: float = 5.0
    compression: str | None = "deflate"
    subprotocols: tuple[str, ...] = ()
    origins: tuple[str | None, ...] | None = None

    def __post_init__(self) -> None:
        if self.max_size is not None and self.max_size <= 0:
            raise ValueError(f"max_size: must be > 0 or None, got {self.max_size!r}")
        if self.max_queue < 1:
            raise ValueError(f"max_queue: must be >= 1, got {self.max_queue!r}")
        if self.write_limit < 1:
            raise ValueError(f"write_limit: must be >= 1, got {self.write_limit!r}")
        for name in ("send_timeout", "ping_interval", "ping_timeout"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name}: must be > 0 or None, got {value!r}")
        if self.close_timeout <= 0:
            raise ValueError(f"close_timeout: must be > 0, got {self.close_timeout!r}")
        if self.compression not in (None, "deflate"):
            raise ValueError(f"compression: must be 'deflate' or None, got {self.compression!r}")

    def replace(self, **changes: Any) -> WSOptions:
        return replace(self, **changes)
