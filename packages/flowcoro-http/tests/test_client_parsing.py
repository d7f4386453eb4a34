"""The client connection's response parsing fed bytes directly (no sockets), with hypothesis."""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowcoro.http.client._connection import HTTPConnection


class _Transport:
    """Just enough transport for the protocol: records writes and closing."""

    def __init__(self) -> None:
        self.closing = False
        self.paused = False

    def write(self, data: bytes) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False


def _feed(pieces: list[bytes], *, is_head: bool = False, eof: bool = False) -> HTTPConnection:
    loop = asyncio.new_event_loop()
    try:
        conn = HTTPConnection(loop, 64 * 1024)
        conn.connection_made(_Transport())  # type: ignore[arg-type]
        conn.begin("GET", "http://h/", is_head=is_head, streaming=False, max_body=1 << 20)
        for piece in pieces:
            conn.data_received(piece)
        if eof:
            conn.connection_lost(None)
        return conn
    finally:
        loop.close()


RESPONSES = [
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 5\r\n\r\nhello",
]


def _splits(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, last = [], 0
    for point in points:
        out.append(data[last:point])
        last = point
    out.append(data[last:])
    return [p for p in out if p]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(index=st.integers(0, len(RESPONSES) - 1), cuts=st.lists(st.integers(0, 200), max_size=8))
def test_any_split_gives_the_same_response(index: int, cuts: list[int]) -> None:
    conn = _feed(_splits(RESPONSES[index], cuts))
    assert conn.error is None
    assert conn.complete
    assert conn.status == 200
    assert conn.keep_alive
    assert b"".join(conn.chunks) == b"hello"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=300), eof=st.booleans())
def test_garbage_never_escapes_as_a_foreign_exception(data: bytes, eof: bool) -> None:
    conn = _feed([b"HTTP/1.1 ", data], eof=eof)
    # Either a complete response, still waiting (no eof), or a ClientError stored for the waiter.
    assert conn.complete or conn.error is not None or not eof
    if conn.error is not None:
        assert conn.error.url == "http://h/"
        assert conn.closed


def test_head_response_completes_at_the_headers() -> None:
    conn = _feed([b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n"], is_head=True)
    assert conn.complete
    assert conn.keep_alive
