"""The HTTP client over TLS: verification on by default, CA bundles, contexts, client certs."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import pytest
from _client_helpers import ok, read_request

from flowcoro.http.client import Client, ConnectError

# trustme makes a throwaway CA; it is a test requirement of flowcoro-net (add it to ours).
trustme = pytest.importorskip("trustme")


def stats(client: Client):  # type: ignore[no-untyped-def]
    return next(iter(client.pool_statistics().values()))


def _tls_contexts() -> tuple[ssl.SSLContext, Any]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    return server_ctx, ca


async def test_tls_verification_on_by_default(tmp_path) -> None:  # type: ignore[no-untyped-def]
    server_ctx, ca = _tls_contexts()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await read_request(reader)
                writer.write(ok(b"secure"))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    url = f"https://127.0.0.1:{port}/"
    try:
        async with Client() as client:
            with pytest.raises(ConnectError, match="TLS handshake failed"):
                await client.get(url)
        cafile = tmp_path / "ca.pem"
        ca.cert_pem.write_to_path(str(cafile))
        async with Client(verify=str(cafile)) as client:
            assert (await client.get(url)).content == b"secure"
            assert (await client.get(url)).content == b"secure"
            assert stats(client).created == 1
        client_ctx = ssl.create_default_context()
        ca.configure_trust(client_ctx)
        async with Client(verify=client_ctx) as client:
            assert (await client.get(url)).content == b"secure"
        async with Client(verify=False) as client:
            assert (await client.get(url)).content == b"secure"
    finally:
        server.close()
        await server.wait_closed()


async def test_client_certificate_is_loaded(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ca = trustme.CA()
    cert = ca.issue_cert("client.example")
    pem = tmp_path / "client.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(pem))
    client = Client(cert=str(pem), verify=False)
    assert client._origins.ssl_context() is client._origins.ssl_context()
    key = tmp_path / "key.pem"
    chain = tmp_path / "chain.pem"
    cert.private_key_pem.write_to_path(str(key))
    cert.cert_chain_pems[0].write_to_path(str(chain))
    Client(cert=(str(chain), str(key)))._origins.ssl_context()
