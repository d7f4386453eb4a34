"""Response content decoding (``Content-Encoding: gzip`` / ``deflate``), bounded in size."""

from __future__ import annotations

import zlib

__all__ = ["Decoder", "make_decoder", "decode_all"]


class Decoder:
    """Incremental decoder; ``deflate`` accepts both the zlib wrapper and raw deflate."""

    __slots__ = ("_deflate", "_first", "_obj")

    def __init__(self, encoding: bytes) -> None:
        self._deflate = encoding == b"deflate"
        self._first = True
        # wbits 16+MAX_WBITS reads the gzip wrapper; MAX_WBITS the zlib one.
        self._obj = zlib.decompressobj(zlib.MAX_WBITS | (0 if self._deflate else 16))

    def decode(self, data: bytes) -> bytes:
        if self._first and data:
            self._first = False
            if self._deflate and (data[0] & 0x0F) != 8:  # not a zlib header: raw deflate
                self._obj = zlib.decompressobj(-zlib.MAX_WBITS)
        return self._obj.decompress(data)

    def flush(self) -> bytes:
        return self._obj.flush()


def make_decoder(encoding: bytes | None) -> Decoder | None:
    """A decoder for a ``Content-Encoding`` value, or None to pass the bytes through."""
    if encoding in (b"gzip", b"x-gzip", b"deflate"):
        return Decoder(b"deflate" if encoding == b"deflate" else b"gzip")
    return None


def decode_all(encoding: bytes, data: bytes, limit: int) -> bytes | None:
    """Decode a whole body; None when the decoded size would exceed ``limit`` (a zip bomb
    never gets inflated past the limit). Raises ``zlib.error`` on corrupt data."""
    decoder = Decoder(b"deflate" if encoding == b"deflate" else b"gzip")
    if decoder._deflate and data and (data[0] & 0x0F) != 8:
        decoder._obj = zlib.decompressobj(-zlib.MAX_WBITS)
    decoder._first = False
    out = decoder._obj.decompress(data, limit + 1)
    if len(out) > limit or decoder._obj.unconsumed_tail:
        return None
    tail = decoder._obj.flush()
    if len(out) + len(tail) > limit:
        return None
    return out + tail if tail else out
