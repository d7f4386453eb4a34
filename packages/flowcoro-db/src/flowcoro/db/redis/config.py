"""Connection settings, parsed from a URL.

``redis://[[username]:password@]host[:port][/db][?option=value...]``, ``rediss://`` for TLS and
``unix:///path/to/socket[?db=N&password=...]``. Query options: ``db``, ``client_name``,
``connect_timeout``, ``command_timeout``, ``max_dedicated``, ``max_pending``, ``ssl_cert_reqs``
(``required`` | ``none``), ``ssl_ca_certs``. Keyword arguments to `RedisConfig.from_url` win.
"""

from __future__ import annotations

import math
import ssl
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from flowcoro.db.errors import DBError

__all__ = ["RedisConfig", "DEFAULT_PORT"]

DEFAULT_PORT = 6379


class _ConfigError(DBError, ValueError):
    pass


def _positive(name: str, value: Any, *, allow_none: bool = True) -> float | None:
    if value is None and allow_none:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _ConfigError(f"redis option {name!r} must be a number, got {value!r}") from None
    if math.isnan(number) or number <= 0:
        raise _ConfigError(f"redis option {name!r} must be > 0, got {value!r}")
    return number


def _count(name: str, value: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise _ConfigError(f"redis option {name!r} must be an integer, got {value!r}") from None
    if number < 1:
        raise _ConfigError(f"redis option {name!r} must be >= 1, got {value!r}")
    return number


@dataclass(frozen=True, slots=True)
class RedisConfig:
    """Where and how to connect. Defaults: ``connect_timeout`` 5 s, ``command_timeout`` 30 s
    (a command unanswered for that long discards its connection), ``max_dedicated`` 16
    connections for blocking commands and WATCH, ``max_pending`` 100,000 commands in flight on the
    shared connection before new ones wait."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    unix_path: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = None
    client_name: str | None = None
    tls: bool = False
    ssl_context: ssl.SSLContext | None = None
    connect_timeout: float | None = 5.0
    command_timeout: float | None = 30.0
    max_dedicated: int = 16
    max_pending: int = 100_000
    reconnect_backoff_max: float = 2.0

    def __post_init__(self) -> None:
        if self.db < 0:
            raise _ConfigError(f"redis option 'db' must be >= 0, got {self.db!r}")
        if not 0 < self.port < 65536:
            raise _ConfigError(f"redis option 'port' must be 1..65535, got {self.port!r}")
        _positive("connect_timeout", self.connect_timeout)
        _positive("command_timeout", self.command_timeout)
        _count("max_dedicated", self.max_dedicated)
        _count("max_pending", self.max_pending)
        _positive("reconnect_backoff_max", self.reconnect_backoff_max, allow_none=False)

    @property
    def address(self) -> str:
        """Where the server is, for error messages (never includes the password)."""
        if self.unix_path is not None:
            return f"unix:{self.unix_path}"
        return f"{'rediss' if self.tls else 'redis'}://{self.host}:{self.port}/{self.db}"

    def make_ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        return self.ssl_context or ssl.create_default_context()

    def with_options(self, **options: Any) -> RedisConfig:
        return replace(self, **options)

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> RedisConfig:
        """Parse ``url``; a bad URL or option raises a `DBError` (also a ValueError) naming it."""
        if not isinstance(url, str) or not url:
            raise _ConfigError(f"redis URL must be a non-empty string, got {url!r}")
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        options: dict[str, Any] = {}
        if scheme in ("redis", "rediss"):
            options["host"] = parts.hostname or "127.0.0.1"
            try:
                options["port"] = parts.port or DEFAULT_PORT
            except ValueError:
                raise _ConfigError(f"redis URL has an invalid port: {url!r}") from None
            path = parts.path.strip("/")
            if path:
                if not path.isdigit():
                    raise _ConfigError(f"redis URL database must be a number, got {path!r}")
                options["db"] = int(path)
            options["tls"] = scheme == "rediss"
        elif scheme == "unix":
            if not parts.path:
                raise _ConfigError(f"unix redis URL needs a socket path: {url!r}")
            options["unix_path"] = unquote(parts.path)
        else:
            raise _ConfigError(
                f"redis URL scheme must be redis://, rediss:// or unix://, got {url!r}"
            )
        if parts.username:
            options["username"] = unquote(parts.username)
        if parts.password is not None:
            options["password"] = unquote(parts.password)
        if options.get("username") == "":
            options["username"] = None
        if "db" in query:
            options["db"] = _count_or_zero(query.pop("db"))
        if "password" in query:
            options["password"] = query.pop("password")
        if "username" in query:
            options["username"] = query.pop("username")
        if "client_name" in query:
            options["client_name"] = query.pop("client_name")
        for name in ("connect_timeout", "command_timeout"):
            if name in query:
                options[name] = _positive(name, query.pop(name))
        for name in ("max_dedicated", "max_pending"):
            if name in query:
                options[name] = _count(name, query.pop(name))
        reqs = query.pop("ssl_cert_reqs", None)
        cafile = query.pop("ssl_ca_certs", None)
        if reqs is not None or cafile is not None:
            ctx = ssl.create_default_context(cafile=cafile)
            if reqs is not None:
                if reqs.lower() not in ("required", "none"):
                    raise _ConfigError(f"ssl_cert_reqs must be 'required' or 'none', got {reqs!r}")
                if reqs.lower() == "none":
                    ctx.check_hostname = False
                    ctx.verify_mode = ssl.CERT_NONE
            options["ssl_context"] = ctx
        if query:
            raise _ConfigError(f"unknown redis URL option(s): {', '.join(sorted(query))}")
        options.update(overrides)
        return cls(**options)


def _count_or_zero(value: str) -> int:
    if not value.isdigit():
        raise _ConfigError(f"redis option 'db' must be a number >= 0, got {value!r}")
    return int(value)
