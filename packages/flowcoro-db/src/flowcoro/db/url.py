"""`URL`: a database URL split into parts (``scheme://user:password@host:port/database?k=v``)."""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = ["URL", "parse_url"]


class URL(NamedTuple):
    scheme: str
    user: str | None
    password: str | None
    host: str | None
    port: int | None
    database: str
    query: dict[str, str]
    raw: str

    def redacted(self) -> str:
        """The URL with its password hidden (safe for logs and error messages)."""
        if self.password is None:
            return self.raw
        scheme, _, rest = self.raw.partition("://")
        netloc, slash, path = rest.partition("/")
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        return f"{scheme}://{user}:***@{hostport}{slash}{path}"

    @property
    def address(self) -> str:
        return f"{self.host or 'localhost'}:{self.port}" if self.port else (self.host or "")


def parse_url(url: str) -> URL:
    """Split a database URL; ``sqlite:///relative.db``, ``sqlite:////abs.db``, ``sqlite://:memory:``."""
    if not isinstance(url, str) or "://" not in url:
        raise ValueError(f"url: expected 'scheme://...', got {url!r}")
    scheme, _, rest = url.partition("://")
    scheme = scheme.lower()
    if scheme.startswith("sqlite"):
        path, _, qs = rest.partition("?")
        database = path[1:] if path.startswith("/") else path
        return URL(scheme, None, None, None, None, unquote(database), dict(parse_qsl(qs)), url)
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"url: bad port in {url!r}") from exc
    return URL(
        scheme,
        unquote(parts.username) if parts.username is not None else None,
        unquote(parts.password) if parts.password is not None else None,
        parts.hostname,
        port,
        unquote(parts.path.lstrip("/")),
        dict(parse_qsl(parts.query)),
        url,
    )
