"""A small in-memory cookie jar (``Client(cookies=True)``).

Scope, deliberately limited: ``Domain`` and host-only cookies, ``Path`` prefixes, ``Secure``,
``Max-Age`` and ``Expires`` (expired cookies are dropped). No public-suffix list: a server may
set a cookie for a parent domain it belongs to, which is fine for calling your own services and
APIs, not for a browser.
"""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime
from http.cookies import CookieError, SimpleCookie

__all__ = ["CookieJar"]


class _Cookie:
    __slots__ = ("domain", "expires", "host_only", "name", "path", "secure", "value")

    def __init__(
        self,
        name: str,
        value: str,
        domain: str,
        host_only: bool,
        path: str,
        secure: bool,
        expires: float | None,
    ) -> None:
        self.name = name
        self.value = value
        self.domain = domain
        self.host_only = host_only
        self.path = path
        self.secure = secure
        self.expires = expires


class CookieJar:
    """Cookies by (domain, path, name)."""

    __slots__ = ("_cookies",)

    def __init__(self) -> None:
        self._cookies: dict[tuple[str, str, str], _Cookie] = {}

    def __len__(self) -> int:
        return len(self._cookies)

    def get(self, name: str, domain: str | None = None) -> str | None:
        """The value of cookie ``name`` (optionally for ``domain``), or None."""
        for cookie in self._cookies.values():
            if cookie.name == name and (domain is None or cookie.domain == domain):
                return cookie.value
        return None

    def set(self, name: str, value: str, domain: str, path: str = "/") -> None:
        self._cookies[(domain, path, name)] = _Cookie(name, value, domain, False, path, False, None)

    def clear(self) -> None:
        self._cookies.clear()

    def extract(self, host: str, path: str, set_cookie_values: list[str]) -> None:
        """Store the cookies of ``Set-Cookie`` headers received from ``host``."""
        now = time.time()
        for header in set_cookie_values:
            parsed = SimpleCookie()
            try:
                parsed.load(header)
            except CookieError:
                continue
            for name, morsel in parsed.items():
                domain = morsel["domain"].lstrip(".").lower()
                host_only = not domain
                if host_only:
                    domain = host
                elif not _domain_match(host, domain):
                    continue  # a server may not set cookies for another site
                cookie_path = morsel["path"] or _default_path(path)
                expires: float | None = None
                if morsel["max-age"]:
                    try:
                        expires = now + int(morsel["max-age"])
                    except ValueError:
                        expires = None
                elif morsel["expires"]:
                    try:
                        expires = parsedate_to_datetime(morsel["expires"]).timestamp()
                    except (TypeError, ValueError):
                        expires = None
                key = (domain, cookie_path, name)
                if expires is not None and expires <= now:
                    self._cookies.pop(key, None)
                    continue
                self._cookies[key] = _Cookie(
                    name,
                    morsel.value,
                    domain,
                    host_only,
                    cookie_path,
                    bool(morsel["secure"]),
                    expires,
                )

    def header_for(self, scheme: str, host: str, path: str) -> str | None:
        """The ``Cookie`` header value for a request, or None when no cookie applies."""
        if not self._cookies:
            return None
        now = time.time()
        found: list[_Cookie] = []
        for key, cookie in list(self._cookies.items()):
            if cookie.expires is not None and cookie.expires <= now:
                del self._cookies[key]
                continue
            if cookie.host_only:
                if host != cookie.domain:
                    continue
            elif not _domain_match(host, cookie.domain):
                continue
            if cookie.secure and scheme != "https":
                continue
            if not _path_match(path, cookie.path):
                continue
            found.append(cookie)
        if not found:
            return None
        found.sort(key=lambda c: len(c.path), reverse=True)
        return "; ".join(f"{c.name}={c.value}" for c in found)


def _domain_match(host: str, domain: str) -> bool:
    return host == domain or host.endswith("." + domain)


def _path_match(path: str, cookie_path: str) -> bool:
    if path == cookie_path:
        return True
    if path.startswith(cookie_path):
        return cookie_path.endswith("/") or path[len(cookie_path)] == "/"
    return False


def _default_path(path: str) -> str:
    if not path.startswith("/") or path.count("/") <= 1:
        return "/"
    return path[: path.rfind("/")]
