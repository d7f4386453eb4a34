"""Small helpers shared by the tests (no async fixtures: each test makes its own servers)."""

from __future__ import annotations

import asyncio
import socket
import struct

from flowcoro.net import BaseProtocol


class Echo(BaseProtocol):
    """The hot-path shape: echo everything, mark activity."""

    def data_received(self, data: bytes) -> None:
        self.active = True
        assert self.transport is not None
        self.transport.write(data)


async def roundtrip(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes
) -> bytes:
    writer.write(data)
    await writer.drain()
    return await reader.readexactly(len(data))


async def close_writer(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        await writer.wait_closed()
    except (ConnectionError, OSError):
        pass


def reset_socket(sock: socket.socket) -> None:
    """Make close() send a RST instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
