"""Static files: `FileResponse` / `file_response` for one file and `StaticFiles` for a directory.

`file_response` answers conditional requests (``If-None-Match`` / ``If-Modified-Since`` -> 304),
single byte ranges (``Range`` with ``If-Range`` -> 206, unsatisfiable -> 416; several ranges in
one request are answered with the whole file, which RFC 9110 allows), serves precompressed
``.br`` / ``.gz`` siblings to clients that accept them (with ``Vary: Accept-Encoding``) and
streams the file in bounded chunks read with ``os.pread`` (the writer waits while the client's
socket buffer is full, so memory stays at one chunk per response).

`StaticFiles` maps a URL path below a prefix onto a directory and never serves anything outside
it: NUL bytes are answered 400; ``..`` segments (also percent-encoded: the path is decoded
before it gets here), absolute paths, backslashes, dot-files and symlinks resolving outside the
root (unless ``allow_outside_symlinks``) are answered 404, the same as a missing file, so a
probe learns nothing.
"""

from __future__ import annotations

import mimetypes
import os
import stat as _stat
from collections.abc import AsyncIterator, Iterable, Mapping
from email.utils import formatdate, parsedate_to_datetime
from typing import Any

from flowcoro.http.errors import HTTPException
from flowcoro.http.request import Request
from flowcoro.http.response import RedirectResponse, Response, StreamingResponse

__all__ = ["FileResponse", "StaticFiles", "file_response", "guess_type"]

DEFAULT_CHUNK = 64 * 1024
_SENDFILE_MAX = 1 << 20  # per os.sendfile call: bounded, so one response cannot hog the loop
_sendfile = getattr(os, "sendfile", None)
_ENCODINGS = (("br", ".br"), ("gzip", ".gz"))


def guess_type(path: str) -> str:
    """The media type for ``path``'s extension (text types get ``charset=utf-8``)."""
    media, _ = mimetypes.guess_type(path, strict=False)
    if media is None:
        return "application/octet-stream"
    if media.startswith("text/") or media in ("application/javascript", "image/svg+xml"):
        media += "; charset=utf-8"
    return media


class FileResponse(StreamingResponse):
    """A file (or a byte range of it) streamed from disk.

    Given the ``connection`` that carries the request (`file_response` passes it), the bytes
    go out with ``os.sendfile`` straight from the page cache to a plain TCP or Unix socket
    (zero copy; asyncio's and uvloop's ``loop.sendfile`` are not used: uvloop does not
    implement it). Whenever the socket is full or the transport still holds bytes, one chunk
    is read with ``os.pread`` and handed to the transport instead, so the writer's flow
    control applies and ordering is kept. TLS connections, and responses without a
    connection, always use the chunked reads (``chunk_size`` bytes at a time).
    """

    __slots__ = ("chunk_size", "connection", "count", "offset", "path")

    def __init__(
        self,
        path: str | os.PathLike[str],
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        *,
        offset: int = 0,
        count: int | None = None,
        chunk_size: int = DEFAULT_CHUNK,
        connection: Any = None,
    ) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size: {chunk_size!r} must be at least 1")
        self.path = os.fspath(path)
        if count is None:
            count = os.stat(self.path).st_size - offset
        if offset < 0 or count < 0:
            raise ValueError(f"offset/count: {offset!r}/{count!r} must not be negative")
        self.offset = offset
        self.count = count
        self.chunk_size = chunk_size
        self.connection = connection
        if media_type is None:
            media_type = guess_type(self.path)
        super().__init__(self._chunks(), status, headers, media_type, content_length=count)

    def _socket(self) -> tuple[Any, int] | None:
        """(transport, socket fd) when zero-copy sending is possible."""
        transport = getattr(self.connection, "transport", None)
        if transport is None or _sendfile is None:
            return None
        if transport.get_extra_info("sslcontext") is not None:
            return None
        sock = transport.get_extra_info("socket")
        if sock is None:
            return None
        return transport, sock.fileno()

    async def _chunks(self) -> AsyncIterator[bytes]:
        # Opened on the first read only: a HEAD request (never iterated) costs no open().
        fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            pos, left, size = self.offset, self.count, self.chunk_size
            target = self._socket()
            while left > 0:
                if target is not None:
                    transport, out = target
                    if transport.is_closing():
                        raise ConnectionResetError("the client went away during a file")
                    if not transport.get_write_buffer_size():
                        try:
                            sent = _sendfile(out, fd, pos, min(left, _SENDFILE_MAX))  # type: ignore[misc]
                        except BlockingIOError:
                            sent = -1  # the socket is full: the next chunk waits in the transport
                        except OSError:
                            target = None  # not a socket sendfile works on: read chunks
                            continue
                        if sent == 0:
                            raise OSError(f"{self.path!r} shrank while being sent")
                        if sent > 0:
                            pos += sent
                            left -= sent
                            continue
                data = os.pread(fd, min(size, left), pos)
                if not data:
                    # The file shrank while being sent: the declared length cannot be met, so
                    # the connection must not be reused (the writer aborts it on this error).
                    raise OSError(f"{self.path!r} shrank while being sent")
                pos += len(data)
                left -= len(data)
                yield data
        finally:
            os.close(fd)


def _etag(st: os.stat_result) -> str:
    return f'"{st.st_mtime_ns:x}-{st.st_size:x}"'


def _tags(header: str) -> list[str]:
    return [t.strip().removeprefix("W/") for t in header.split(",") if t.strip()]


def _not_modified(request: Request, etag: str, mtime: float) -> bool:
    headers = request.headers
    inm = headers.get("if-none-match")
    if inm is not None:
        tags = _tags(inm)
        return "*" in tags or etag in tags
    ims = headers.get("if-modified-since")
    if ims is not None:
        try:
            since = parsedate_to_datetime(ims).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            return False
        return int(mtime) <= since
    return False


def parse_range(header: str, size: int) -> tuple[int, int] | bool | None:
    """``bytes=a-b`` -> (start, end inclusive); None: ignore the header (malformed or several
    ranges: the whole file is sent); False: unsatisfiable (416)."""
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    try:
        if not first:
            n = int(last)
            if n < 0 or not last.isdigit():
                return None
            if n == 0:
                return False
            return max(0, size - n), size - 1
        if not first.isdigit() or (last and not last.isdigit()):
            return None
        start = int(first)
        if start >= size:
            return False
        end = int(last) if last else size - 1
    except ValueError:  # pragma: no cover - isdigit() above
        return None
    if end < start:
        return None  # syntactically invalid: ignored (RFC 9110 14.1.1)
    return start, min(end, size - 1)


def _if_range_ok(request: Request, etag: str, last_modified: str) -> bool:
    value = request.headers.get("if-range")
    if value is None:
        return True
    value = value.strip()
    if value.startswith('"'):
        return value == etag  # strong comparison
    return value == last_modified


def _accepts(request: Request) -> set[str]:
    header = request.headers.get("accept-encoding")
    if not header:
        return set()
    out = set()
    for part in header.split(","):
        name, _, params = part.partition(";")
        q = params.strip()
        if q.startswith("q="):
            try:
                if float(q[2:]) <= 0:
                    continue
            except ValueError:
                continue
        out.add(name.strip().lower())
    return out


def file_response(
    request: Request,
    path: str | os.PathLike[str],
    *,
    media_type: str | None = None,
    headers: Mapping[str, str] | None = None,
    precompressed: bool = True,
    chunk_size: int = DEFAULT_CHUNK,
    st: os.stat_result | None = None,
) -> Response:
    """The response for ``path`` answering ``request``'s conditional and range headers."""
    path = os.fspath(path)
    if st is None:
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            raise HTTPException(404, "no such file") from None
    if not _stat.S_ISREG(st.st_mode):
        raise HTTPException(404, "no such file")
    if media_type is None:
        media_type = guess_type(path)
    extra: dict[str, str] = dict(headers) if headers else {}
    if precompressed:
        accepted = _accepts(request)
        for coding, suffix in _ENCODINGS:
            try:
                sib = os.stat(path + suffix)
            except OSError:
                continue
            if not _stat.S_ISREG(sib.st_mode):
                continue
            extra["vary"] = "accept-encoding"
            if coding in accepted or (coding == "gzip" and "x-gzip" in accepted):
                path, st = path + suffix, sib
                extra["content-encoding"] = coding
                break
    etag = _etag(st)
    last_modified = formatdate(st.st_mtime, usegmt=True)
    extra["etag"] = etag
    extra["last-modified"] = last_modified
    extra["accept-ranges"] = "bytes"
    if _not_modified(request, etag, st.st_mtime):
        extra.pop("content-encoding", None)
        return Response(b"", 304, extra, media_type)
    size = st.st_size
    rng = request.headers.get("range")
    if (
        rng is not None
        and request.method in ("GET", "HEAD")
        and _if_range_ok(request, etag, last_modified)
    ):
        span = parse_range(rng, size)
        if span is False:
            return Response(
                b"", 416, {"content-range": f"bytes */{size}", "accept-ranges": "bytes"}
            )
        if span is not None and span is not True:
            start, end = span
            extra["content-range"] = f"bytes {start}-{end}/{size}"
            return FileResponse(
                path,
                206,
                extra,
                media_type,
                offset=start,
                count=end - start + 1,
                chunk_size=chunk_size,
                connection=request._conn,
            )
    return FileResponse(
        path, 200, extra, media_type, count=size, chunk_size=chunk_size, connection=request._conn
    )


class StaticFiles:
    """Serve ``directory``: ``handler(request, path)`` where ``path`` is relative to it.

    ``index`` names the files tried for a directory (``()`` disables it; there is never a
    listing); a directory asked for without its trailing slash is redirected (308) to it.
    """

    __slots__ = (
        "allow_outside_symlinks",
        "chunk_size",
        "dotfiles",
        "headers",
        "index",
        "precompressed",
        "root",
    )

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        index: str | Iterable[str] | None = "index.html",
        precompressed: bool = True,
        allow_outside_symlinks: bool = False,
        dotfiles: bool = False,
        headers: Mapping[str, str] | None = None,
        chunk_size: int = DEFAULT_CHUNK,
    ) -> None:
        root = os.path.realpath(os.fspath(directory))
        if not os.path.isdir(root):
            raise ValueError(f"directory: {os.fspath(directory)!r} is not a directory")
        if chunk_size < 1:
            raise ValueError(f"chunk_size: {chunk_size!r} must be at least 1")
        self.root = root
        if index is None:
            self.index: tuple[str, ...] = ()
        elif isinstance(index, str):
            self.index = (index,)
        else:
            self.index = tuple(index)
        self.precompressed = precompressed
        self.allow_outside_symlinks = allow_outside_symlinks
        self.dotfiles = dotfiles
        self.headers = dict(headers) if headers else None
        self.chunk_size = chunk_size

    def resolve(self, path: str) -> str | None:
        """The file system path for URL path ``path`` (decoded, relative), or None when it is
        not allowed (the caller answers 404). NUL bytes raise a 400."""
        if "\x00" in path:
            raise HTTPException(400, "the path contains a NUL byte")
        if path.startswith("/") or "\\" in path:
            return None
        parts = [p for p in path.split("/") if p]
        for part in parts:
            if part in (".", "..") or (part.startswith(".") and not self.dotfiles):
                return None
        full = os.path.join(self.root, *parts)
        real = os.path.realpath(full)
        if (
            not self.allow_outside_symlinks
            and real != self.root
            and os.path.commonpath((self.root, real)) != self.root
        ):
            return None
        return full

    async def __call__(self, request: Request, path: str = "") -> Response:
        full = self.resolve(path)
        if full is None:
            raise HTTPException(404, "no such file")
        try:
            st = os.stat(full)
        except (OSError, ValueError):
            raise HTTPException(404, "no such file") from None
        if _stat.S_ISDIR(st.st_mode):
            for name in self.index:
                candidate = os.path.join(full, name)
                try:
                    ist = os.stat(candidate)
                except OSError:
                    continue
                if not _stat.S_ISREG(ist.st_mode):
                    continue
                if not request.path.endswith("/"):
                    target = request.path + "/"
                    if request.query_string:
                        target += "?" + request.query_string.decode("latin-1")
                    return RedirectResponse(target, 308)
                return self._file(request, candidate, ist)
            raise HTTPException(404, "no such file")
        return self._file(request, full, st)

    def _file(self, request: Request, full: str, st: os.stat_result) -> Response:
        return file_response(
            request,
            full,
            headers=self.headers,
            precompressed=self.precompressed,
            chunk_size=self.chunk_size,
            st=st,
        )


def mount_static(app: Any, prefix: str, directory: str | os.PathLike[str], **options: Any) -> None:
    """Add GET (and so HEAD) routes serving ``directory`` under ``prefix`` to ``app``."""
    files = StaticFiles(directory, **options)
    prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
    app.add_route(prefix + "/{path:path}", files, ("GET",))
    app.add_route(prefix + "/", files, ("GET",))
    if prefix:
        app.add_route(prefix, files, ("GET",))
