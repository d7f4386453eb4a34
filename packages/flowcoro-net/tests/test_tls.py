from __future__ import annotations

import asyncio
import ssl

import pytest
import trustme
from _net_helpers import Echo, close_writer, roundtrip

from flowcoro.net import ConnectError, Connection, Limits, connect, start_server


def _contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = trustme.CA()  # a throwaway CA and certificate, made by the test
    cert = ca.issue_cert("127.0.0.1", "localhost")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    return server_ctx, client_ctx


async def test_tls_echo_with_a_self_signed_certificate() -> None:
    server_ctx, client_ctx = _contexts()
    async with await start_server(
        Echo, host="127.0.0.1", port=0, ssl=server_ctx, observers=()
    ) as server:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", server.port, ssl=client_ctx, server_hostname="localhost"
        )
        assert writer.get_extra_info("ssl_object") is not None
        assert await roundtrip(reader, writer, b"secret") == b"secret"
        await close_writer(writer)


async def test_tls_stream_client_and_handler() -> None:
    server_ctx, client_ctx = _contexts()

    async def handler(conn: Connection) -> None:
        assert conn.get_extra_info("ssl_object") is not None
        line = await conn.read_until(b"\n")
        await conn.send(line.upper())

    async with await start_server(
        handler, host="127.0.0.1", port=0, ssl=server_ctx, observers=()
    ) as server:
        async with await connect("127.0.0.1", server.port, ssl=client_ctx) as conn:
            await conn.send(b"hello tls\n")
            assert await conn.read_until(b"\n") == b"HELLO TLS\n"
        # A client that does not trust the certificate fails with a clear error.
        with pytest.raises(ConnectError):
            await connect("127.0.0.1", server.port, ssl=True)


async def echo_handler(conn: Connection) -> None:
    while data := await conn.read():
        await conn.send(data)


@pytest.mark.parametrize("target", [Echo, echo_handler])
async def test_tls_connections_count_against_the_limit_after_the_handshake(target: object) -> None:
    server_ctx, client_ctx = _contexts()
    limits = Limits(max_connections=1, overflow="refuse")
    async with await start_server(
        target,  # type: ignore[arg-type]
        host="127.0.0.1",
        port=0,
        ssl=server_ctx,
        limits=limits,
        observers=(),
    ) as server:
        # Two handshakes race: both protocols are created before either is established.
        opened = await asyncio.gather(
            *(
                asyncio.open_connection(
                    "127.0.0.1", server.port, ssl=client_ctx, server_hostname="localhost"
                )
                for _ in range(2)
            ),
            return_exceptions=True,
        )
        served = 0
        for item in opened:
            if isinstance(item, BaseException):
                continue
            reader, writer = item
            try:
                reply = await asyncio.wait_for(roundtrip(reader, writer, b"t"), 2)
                served += reply == b"t"
            except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
                pass
            await close_writer(writer)
        assert served == 1
        assert server.statistics().refused == 1
