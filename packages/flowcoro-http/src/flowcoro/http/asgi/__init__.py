"""ASGI in both directions.

- `from_asgi(asgi_app)` serves any ASGI 3 application on the flowcoro HTTP protocol (``http``
  and ``lifespan`` scopes; ``flowcoro serve module:asgi_app`` does this for you).
- `App.asgi` (`ASGIAdapter`) turns a flowcoro `App` into an ASGI 3 application for uvicorn,
  granian or hypercorn.
"""

from __future__ import annotations

from flowcoro.http.asgi.export import ASGIAdapter
from flowcoro.http.asgi.lifespan import Lifespan, LifespanError
from flowcoro.http.asgi.server import ASGIBridge, from_asgi, is_asgi_app

__all__ = ["ASGIAdapter", "ASGIBridge", "Lifespan", "LifespanError", "from_asgi", "is_asgi_app"]
