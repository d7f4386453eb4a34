"""URL handling: parse once, cache, merge query parameters, resolve redirects."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeAlias
from urllib.parse import quote, urlencode, urljoin, urlsplit

from flowcoro.http.client.errors import InvalidURL

__all__ = ["Target", "parse_url", "join_url", "ParamsType"]

ParamValue: TypeAlias = str | int | float | bool | None
ParamsType: TypeAlias = (
    Mapping[str, ParamValue | Sequence[ParamValue]] | Sequence[tuple[str, ParamValue]] | str
)

_DEFAULT_PORTS = {"http": 80, "https": 443}
_CACHE: dict[str, Target] = {}
_CACHE_MAX = 512
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
_QUERY_SAFE = _PATH_SAFE + "?"


class Target:
    """A parsed request URL: what the pool key, the request line and ``Host`` need."""

    __slots__ = ("host", "host_header", "origin", "path", "port", "scheme", "target", "url")

    def __init__(self, url: str, scheme: str, host: str, port: int, target: str) -> None:
        self.url = url
        self.scheme = scheme
        self.host = host
        self.port = port
        self.origin = (scheme, host, port)
        default = _DEFAULT_PORTS[scheme]
        bracketed = f"[{host}]" if ":" in host else host
        self.host_header = bracketed if port == default else f"{bracketed}:{port}"
        self.target = target
        self.path = target.partition("?")[0]


def parse_url(url: str, params: ParamsType | None = None, *, method: str = "") -> Target:
    """Parse ``url`` (absolute http/https) and append ``params`` to its query."""
    if params is None:
        cached = _CACHE.get(url)
        if cached is not None:
            return cached
    if not isinstance(url, str):
        raise InvalidURL(
            f"URL must be a str, got {type(url).__name__}", method=method, url=repr(url)
        )
    if "\r" in url or "\n" in url or "\x00" in url or "\t" in url:
        raise InvalidURL("URL contains CR, LF, NUL or TAB", method=method, url=repr(url))
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidURL(f"cannot parse URL: {exc}", method=method, url=url) from exc
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise InvalidURL(
            f"URL scheme must be http or https, got {parts.scheme!r}", method=method, url=url
        )
    host = parts.hostname
    if not host:
        raise InvalidURL("URL has no host", method=method, url=url)
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise InvalidURL(f"bad host name: {exc}", method=method, url=url) from exc
    if parts.username is not None or parts.password is not None:
        raise InvalidURL(
            "credentials in the URL are not supported: set an Authorization header",
            method=method,
            url=url,
        )
    path = quote(parts.path, safe=_PATH_SAFE) or "/"
    query = quote(parts.query, safe=_QUERY_SAFE) if parts.query else ""
    if params is not None:
        extra = params if isinstance(params, str) else urlencode(_flatten(params))
        if extra:
            query = f"{query}&{extra}" if query else extra
    target = f"{path}?{query}" if query else path
    full = url
    if params is not None:
        full = f"{scheme}://{parts.netloc}{target}"
    result = Target(full, scheme, host, port or _DEFAULT_PORTS[scheme], target)
    if params is None:
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.clear()
        _CACHE[url] = result
    return result


def _flatten(
    params: Mapping[str, ParamValue | Sequence[ParamValue]] | Sequence[tuple[str, ParamValue]],
) -> list[tuple[str, str]]:
    items = params.items() if isinstance(params, Mapping) else params
    out: list[tuple[str, str]] = []
    for key, value in items:
        if isinstance(value, list | tuple):
            out.extend((key, _param(v)) for v in value)
        else:
            out.append((key, _param(value)))
    return out


def _param(value: object) -> str:
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


def join_url(base: str, location: str) -> str:
    """Resolve a ``Location`` (or a request path against ``base_url``)."""
    return urljoin(base, location)
