"""Cookies: parsing the request's ``Cookie`` header and building ``Set-Cookie`` values."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Literal
from urllib.parse import quote

from flowcoro.http.errors import HeaderValueError

__all__ = ["parse_cookies", "build_set_cookie"]

_NAME_BAD = frozenset('()<>@,;:\\"/[]?={} \t\r\n\x00')


def parse_cookies(header: str) -> dict[str, str]:
    """``a=1; b=2`` -> ``{"a": "1", "b": "2"}``; malformed pairs are skipped, the first value of
    a repeated name wins (browsers send the most specific cookie first)."""
    cookies: dict[str, str] = {}
    for part in header.split(";"):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or not name:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        cookies.setdefault(name, value)
    return cookies


def build_set_cookie(
    key: str,
    value: str = "",
    *,
    max_age: int | None = None,
    expires: datetime | int | None = None,
    path: str | None = "/",
    domain: str | None = None,
    secure: bool = False,
    httponly: bool = False,
    samesite: Literal["lax", "strict", "none"] | None = "lax",
) -> str:
    if not key or any(c in _NAME_BAD for c in key):
        raise HeaderValueError(f"cookie name {key!r} is not a valid token")
    parts = [f"{key}={quote(value, safe='!#$%&()*+-./:<=>?@[]^_`{|}~')}"]
    if max_age is not None:
        parts.append(f"Max-Age={int(max_age)}")
    if expires is not None:
        if isinstance(expires, int):
            expires = datetime.fromtimestamp(expires, UTC)
        parts.append(f"Expires={format_datetime(expires.astimezone(UTC), usegmt=True)}")
    for label, attr in (("Path", path), ("Domain", domain)):
        if attr is not None:
            if any(c in attr for c in ";\r\n\x00"):
                raise HeaderValueError(f"cookie {label.lower()} {attr!r} contains ';' or CR/LF")
            parts.append(f"{label}={attr}")
    if secure:
        parts.append("Secure")
    if httponly:
        parts.append("HttpOnly")
    if samesite is not None:
        if samesite not in ("lax", "strict", "none"):
            raise HeaderValueError(f"samesite: expected lax, strict or none, got {samesite!r}")
        parts.append(f"SameSite={samesite.capitalize()}")
    return "; ".join(parts)
