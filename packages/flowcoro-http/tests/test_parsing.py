"""The protocol without sockets: fed bytes through a recording transport (hypothesis)."""

from __future__ import annotations

import asyncio
from typing import Any

from _http_helpers import make_app
from hypothesis import given, settings
from hypothesis import strategies as st

from flowcoro.http import Request


class Recorder(asyncio.Transport):
    """Just enough of a transport to run the protocol on bytes."""

    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False
        self.eof = False

    def write(self, data: Any) -> None:
        self.out += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 5555) if name == "peername" else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


seen: list[Request] = []
app = make_app()


@app.route("/h", methods=["GET", "POST"])
async def h(request: Request) -> str:
    seen.append(request)
    return "ok"


factory = app.protocol_factory()

token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12).filter(
    lambda s: s not in ("host", "content-length", "transfer-encoding", "expect", "connection")
)
value = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=0, max_size=30
)


async def deliver(proto: Any, data: bytes) -> None:
    """As the event loop does: from a callback, outside any task."""
    asyncio.get_running_loop().call_soon(proto.data_received, data)
    await asyncio.sleep(0)


def feed(chunks: list[bytes]) -> Recorder:
    async def run() -> Recorder:
        proto = factory()
        transport = Recorder()
        proto.connection_made(transport)
        for chunk in chunks:
            await deliver(proto, chunk)
        await asyncio.sleep(0)
        proto.connection_lost(None)
        return transport

    return asyncio.run(run())


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(token, value), max_size=20), st.integers(1, 50))
def test_headers_round_trip_in_any_split(fields: list[tuple[str, str]], cut: int) -> None:
    seen.clear()
    head = "GET /h HTTP/1.1\r\nHost: x\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields)
    data = (head + "\r\n").encode()
    chunks = [data[i : i + cut] for i in range(0, len(data), cut)]
    transport = feed(chunks)
    assert transport.out.startswith(b"HTTP/1.1 200 OK"), bytes(transport.out[:200])
    (request,) = seen
    for k, v in fields:
        assert v.strip() in request.headers.getlist(k)
    assert request.headers["host"] == "x"
    assert request.headers.raw[0] == (b"host", b"x")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_get_an_answer_or_nothing(data: bytes) -> None:
    transport = feed([data])
    out = bytes(transport.out)
    if out:
        status = int(out.split(b" ", 2)[1])
        assert status in (200, 400, 404, 405, 408, 413, 417, 431, 501, 505)
        if status >= 400:
            assert transport.eof or transport.closed


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=8))
def test_chunked_body_in_any_framing(chunks: list[bytes]) -> None:
    got: list[bytes] = []
    local = make_app()

    @local.post("/")
    async def collect(request: Request) -> str:
        got.append(await request.body())
        return "ok"

    local_factory = local.protocol_factory()
    body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
    data = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + body

    async def run() -> bytes:
        proto = local_factory()
        transport = Recorder()
        proto.connection_made(transport)
        for i in range(0, len(data), 7):
            await deliver(proto, data[i : i + 7])
        for _ in range(5):
            await asyncio.sleep(0)
        proto.connection_lost(None)
        return bytes(transport.out)

    out = asyncio.run(run())
    assert out.startswith(b"HTTP/1.1 200 OK")
    assert got == [b"".join(chunks)]


def test_lingering_close_drops_input_and_idle_state() -> None:
    async def run() -> tuple[Recorder, bool, bool]:
        proto = factory()
        transport = Recorder()
        proto.connection_made(transport)
        proto.active = False
        idle_before = proto.idle
        await deliver(proto, b"GET /h HTTP/1.1\r\nHost: x\r\n")
        busy = proto.idle
        await deliver(proto, b"\r\nNOT HTTP AT ALL\r\n\r\n")
        size = len(transport.out)
        await deliver(proto, b"GET /h HTTP/1.1\r\nHost: x\r\n\r\n")  # dropped: lingering
        assert len(transport.out) == size
        proto.connection_lost(None)
        return transport, idle_before, busy

    transport, idle_before, busy = asyncio.run(run())
    assert idle_before is True
    assert busy is False
    assert transport.eof
    assert transport.out.count(b"HTTP/1.1 ") == 2
