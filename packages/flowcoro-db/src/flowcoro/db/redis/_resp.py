"""RESP2 framing: the reply reader and the command encoder.

hiredis (installed with the ``redis`` extra; it is the parser redis-py itself uses when present)
provides both in C. `PyReader` and `py_pack_command` are the pure-Python fallbacks with the same
interface, for interpreters without a hiredis wheel. Both readers hand error replies back as
`ReplyError` *values* (never raised), so an error reply fails only the command it answers, even
inside a MULTI/EXEC array.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Final, Protocol

__all__ = [
    "ReplyError",
    "ProtocolError",
    "Reader",
    "PyReader",
    "py_pack_command",
    "make_reader",
    "pack_command",
    "HAVE_HIREDIS",
]

MAX_BULK: Final = 512 * 1024 * 1024  # Redis's own proto-max-bulk-len default
MAX_ARRAY: Final = 1 << 32


class ReplyError(Exception):
    """An error reply as parsed (``-ERR ...``): returned by the reader, not raised."""


class ProtocolError(Exception):
    """The byte stream is not RESP2: the connection cannot be trusted any more."""


class Reader(Protocol):
    def feed(self, data: bytes, /) -> None: ...

    def gets(self) -> Any: ...


class _Incomplete(Exception):
    pass


_INCOMPLETE: Final = _Incomplete()


class PyReader:
    """Incremental RESP2 reader: ``feed`` bytes, ``gets`` one reply or False when incomplete."""

    __slots__ = ("_buf", "_pos")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0

    def feed(self, data: bytes, /) -> None:
        self._buf += data

    def gets(self) -> Any:
        try:
            value, pos = self._parse(self._pos)
        except _Incomplete:
            return False
        if pos == len(self._buf):
            self._buf.clear()
            self._pos = 0
        elif pos > 65536:
            del self._buf[:pos]
            self._pos = 0
        else:
            self._pos = pos
        return value

    def _line(self, pos: int) -> tuple[bytes, int]:
        end = self._buf.find(b"\r\n", pos)
        if end < 0:
            raise _INCOMPLETE
        return bytes(self._buf[pos:end]), end + 2

    def _int(self, raw: bytes) -> int:
        try:
            return int(raw)
        except ValueError:
            raise ProtocolError(f"expected an integer in the reply, got {raw[:40]!r}") from None

    def _parse(self, pos: int) -> tuple[Any, int]:
        buf = self._buf
        if pos >= len(buf):
            raise _INCOMPLETE
        kind = buf[pos]
        line, pos = self._line(pos + 1)
        if kind == 43:  # '+'
            return line, pos
        if kind == 45:  # '-'
            return ReplyError(line.decode("utf-8", "replace")), pos
        if kind == 58:  # ':'
            return self._int(line), pos
        if kind == 36:  # '$'
            size = self._int(line)
            if size == -1:
                return None, pos
            if size < 0 or size > MAX_BULK:
                raise ProtocolError(f"invalid bulk length {size}")
            end = pos + size
            if end + 2 > len(buf):
                raise _INCOMPLETE
            if buf[end : end + 2] != b"\r\n":
                raise ProtocolError("bulk string not terminated by CRLF")
            return bytes(buf[pos:end]), end + 2
        if kind == 42:  # '*'
            count = self._int(line)
            if count == -1:
                return None, pos
            if count < 0 or count > MAX_ARRAY:
                raise ProtocolError(f"invalid array length {count}")
            items: list[Any] = []
            for _ in range(count):
                item, pos = self._parse(pos)
                items.append(item)
            return items, pos
        raise ProtocolError(f"unexpected reply type byte {bytes([kind])!r}")


def _arg(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bool):
        raise TypeError("command arguments must be str, bytes, int or float, not bool")
    if isinstance(value, int | float):
        return repr(value).encode()
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise TypeError(f"command arguments must be str, bytes, int or float, not {type(value)!r}")


def py_pack_command(args: Sequence[object], /) -> bytes:
    """Encode one command as a RESP2 array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for value in args:
        raw = _arg(value)
        parts.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(parts)


_hiredis: Any
try:
    import hiredis as _hiredis
except ImportError:  # pragma: no cover - the extra installs hiredis; exercised where it is absent
    _hiredis = None

HAVE_HIREDIS: Final = _hiredis is not None


def _py_reader() -> Reader:
    return PyReader()


def _hiredis_reader() -> Reader:
    reader: Reader = _hiredis.Reader(protocolError=ProtocolError, replyError=ReplyError)
    return reader


make_reader: Callable[[], Reader] = _hiredis_reader if _hiredis is not None else _py_reader
pack_command: Callable[[Sequence[object]], bytes] = (
    _hiredis.pack_command if _hiredis is not None else py_pack_command
)
