"""Form bodies: ``application/x-www-form-urlencoded`` and ``multipart/form-data``.

The body is read through `Request.body()`, so the body limit (app-wide or the route's) bounds it
before parsing starts; the number of fields and of files is bounded too (413 beyond), and a
malformed body is answered with 400. Files are held in memory as `UploadFile` (within the body
limit); raise a route's ``max_body_size`` for larger uploads or stream them with
`Request.stream()`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from flowcoro.http.datastructures import MultiDict
from flowcoro.http.errors import FormError
from flowcoro.http.limits import HTTPLimits

if TYPE_CHECKING:
    from flowcoro.http.request import Request

__all__ = ["FormData", "UploadFile", "parse_form", "parse_multipart", "parse_urlencoded"]

_DEFAULT = HTTPLimits()


class UploadFile:
    """A file part of a multipart form."""

    __slots__ = ("content_type", "data", "filename", "headers")

    def __init__(
        self, filename: str, content_type: str, headers: dict[str, str], data: bytes
    ) -> None:
        self.filename = filename
        self.content_type = content_type
        self.headers = headers
        self.data = data

    @property
    def size(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        return f"UploadFile({self.filename!r}, {self.content_type!r}, size={self.size})"


class FormData(MultiDict["str | UploadFile"]):
    __slots__ = ()


def _params(header: str) -> tuple[str, dict[str, str]]:
    """``form-data; name="a"; filename="b"`` -> ("form-data", {"name": "a", "filename": "b"})."""
    value, _, rest = header.partition(";")
    params: dict[str, str] = {}
    for part in rest.split(";"):
        key, sep, val = part.strip().partition("=")
        if not sep:
            continue
        val = val.strip()
        if len(val) >= 2 and val[0] == val[-1] == '"':
            val = val[1:-1].replace('\\"', '"')
        params[key.strip().lower()] = val
    return value.strip().lower(), params


def parse_urlencoded(body: bytes, limits: HTTPLimits = _DEFAULT) -> FormData:
    try:
        pairs = parse_qsl(
            body.decode("latin-1"),
            keep_blank_values=True,
            max_num_fields=limits.max_form_fields,
            encoding="utf-8",
            errors="replace",
        )
    except ValueError as exc:
        raise FormError(413, f"more than {limits.max_form_fields} form fields") from exc
    return FormData(pairs)


def parse_multipart(body: bytes, boundary: str, limits: HTTPLimits = _DEFAULT) -> FormData:
    if not boundary or len(boundary) > 70:
        raise FormError(400, "the multipart boundary is missing or longer than 70 characters")
    delimiter = b"--" + boundary.encode("latin-1")
    sections = body.split(delimiter)
    if len(sections) < 3 or not sections[-1].startswith(b"--"):
        raise FormError(400, "the multipart body is not terminated by its closing boundary")
    items: list[tuple[str, str | UploadFile]] = []
    files = 0
    for section in sections[1:-1]:
        if not section.startswith(b"\r\n") or not section.endswith(b"\r\n"):
            raise FormError(400, "a multipart part is not delimited by CRLF")
        head, sep, data = section[2:-2].partition(b"\r\n\r\n")
        if not sep:
            raise FormError(400, "a multipart part has no header block")
        headers: dict[str, str] = {}
        for line in head.split(b"\r\n") if head else ():
            name, colon, value = line.partition(b":")
            if not colon:
                raise FormError(400, "a multipart part has a malformed header line")
            headers[name.strip().lower().decode("latin-1")] = value.strip().decode(
                "utf-8", "replace"
            )
        disposition, params = _params(headers.get("content-disposition", ""))
        if disposition != "form-data" or "name" not in params:
            raise FormError(400, "a multipart part lacks 'Content-Disposition: form-data; name='")
        if len(items) >= limits.max_form_fields:
            raise FormError(413, f"more than {limits.max_form_fields} form fields")
        if "filename" in params:
            files += 1
            if files > limits.max_form_files:
                raise FormError(413, f"more than {limits.max_form_files} files in the form")
            content_type = headers.get("content-type", "application/octet-stream")
            items.append(
                (params["name"], UploadFile(params["filename"], content_type, headers, data))
            )
        else:
            items.append((params["name"], data.decode("utf-8", "replace")))
    return FormData(items)


async def parse_form(request: Request) -> FormData:
    limits = getattr(request.app, "limits", None) or _DEFAULT
    kind, params = _params(request.headers.get("content-type") or "")
    if kind == "application/x-www-form-urlencoded":
        return parse_urlencoded(await request.body(), limits)
    if kind == "multipart/form-data":
        return parse_multipart(await request.body(), params.get("boundary", ""), limits)
    raise FormError(415, f"expected a form content type, got {kind or 'none'!r}")
