from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path

import pytest
from _net_helpers import Echo, close_writer, roundtrip

from flowcoro.net import (
    BaseProtocol,
    Connection,
    InvalidLimit,
    Limits,
    start_server,
)


async def test_echo_round_trips_over_tcp() -> None:
    async with await start_server(Echo, host="127.0.0.1", port=0, observers=()) as server:
        assert server.addresses[0][0] == "127.0.0.1"
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        for i in range(50):
            payload = f"message {i}\n".encode()
            assert await roundtrip(reader, writer, payload) == payload
        big = bytes(range(256)) * 4096
        assert await roundtrip(reader, writer, big) == big
        (proto,) = server.connections
        sock = proto.transport.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        await close_writer(writer)
    stats = server.statistics()
    assert stats.accepted == 1
    assert stats.active == 0


async def test_echo_over_unix_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "echo.sock")
    server = await start_server(Echo, uds=path, observers=())
    assert server.addresses == [path]
    reader, writer = await asyncio.open_unix_connection(path)
    assert await roundtrip(reader, writer, b"over unix") == b"over unix"
    await close_writer(writer)
    await server.shutdown()
    assert not Path(path).exists()


async def test_stale_unix_socket_file_is_replaced_but_a_regular_file_is_not(
    tmp_path: Path,
) -> None:
    path = tmp_path / "stale.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # leaves the socket file behind, like a crashed server
    async with await start_server(Echo, uds=str(path), observers=()):
        reader, writer = await asyncio.open_unix_connection(str(path))
        assert await roundtrip(reader, writer, b"x") == b"x"
        await close_writer(writer)
    regular = tmp_path / "file"
    regular.write_text("keep me")
    with pytest.raises(OSError):
        await start_server(Echo, uds=str(regular), observers=())
    assert regular.read_text() == "keep me"


async def test_ipv6_and_every_interface() -> None:
    if not socket.has_ipv6:  # pragma: no cover
        pytest.skip("no IPv6")
    async with await start_server(Echo, host=["::1", "127.0.0.1"], port=0, observers=()) as srv:
        families = {s.family for s in srv.sockets}
        assert families == {socket.AF_INET6, socket.AF_INET}
        for host in ("::1", "127.0.0.1"):
            reader, writer = await asyncio.open_connection(host, srv.port)
            assert await roundtrip(reader, writer, host.encode()) == host.encode()
            await close_writer(writer)
    async with await start_server(Echo, port=0, observers=()) as srv:
        # Every interface, both families, one port.
        assert {s.getsockname()[1] for s in srv.sockets} == {srv.port}
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        assert await roundtrip(reader, writer, b"any") == b"any"
        await close_writer(writer)


async def test_a_thousand_concurrent_clients() -> None:
    async def handler(conn: Connection) -> None:
        while line := await conn.read(1024):
            await conn.send(line)

    async with await start_server(handler, host="127.0.0.1", port=0, observers=()) as server:

        async def client(i: int) -> bytes:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            try:
                return await roundtrip(reader, writer, f"client {i}".encode())
            finally:
                await close_writer(writer)

        # Hold all 1,000 open at once: each client waits for the others before closing.
        opened = 0
        all_open = asyncio.Event()

        async def held(i: int) -> bytes:
            nonlocal opened
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            try:
                reply = await roundtrip(reader, writer, f"client {i}".encode())
                opened += 1
                if opened == 1000:
                    all_open.set()
                await all_open.wait()
                return reply
            finally:
                await close_writer(writer)

        replies = await asyncio.gather(*(held(i) for i in range(1000)))
        assert replies == [f"client {i}".encode() for i in range(1000)]
        assert server.statistics().peak == 1000
        assert await client(1000) == b"client 1000"


async def test_reuse_port_lets_two_servers_share_a_port() -> None:
    first = await start_server(Echo, host="127.0.0.1", port=0, reuse_port=True, observers=())
    second = await start_server(
        Echo, host="127.0.0.1", port=first.port, reuse_port=True, observers=()
    )
    assert first.port == second.port
    await first.shutdown()
    reader, writer = await asyncio.open_connection("127.0.0.1", second.port)
    assert await roundtrip(reader, writer, b"second") == b"second"
    await close_writer(writer)
    await second.shutdown()


async def test_serving_an_existing_socket() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(10)
    sock.setblocking(False)
    async with await start_server(Echo, sock=sock, observers=()) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        assert await roundtrip(reader, writer, b"sock") == b"sock"
        await close_writer(writer)
    assert sock.fileno() == -1  # the server owns and closed it


async def test_bad_arguments_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(InvalidLimit, match="backlog"):
        await start_server(Echo, port=0, backlog=0)
    with pytest.raises(InvalidLimit, match="port"):
        await start_server(Echo, port=70000)
    with pytest.raises(InvalidLimit, match="port"):
        await start_server(Echo, host="127.0.0.1")
    with pytest.raises(InvalidLimit, match="port"):
        await start_server(Echo)
    with pytest.raises(InvalidLimit, match="ssl"):
        await start_server(Echo, port=0, ssl=object())  # type: ignore[arg-type]
    with pytest.raises(InvalidLimit, match="protocol_factory"):
        await start_server(42, port=0)  # type: ignore[arg-type]
    server = await start_server(Echo, uds=str(tmp_path / "s"), observers=())
    with pytest.raises(InvalidLimit, match="port"):
        server.port  # noqa: B018
    await server.shutdown()
    server2 = await start_server(Echo, port=0, observers=())
    with pytest.raises(InvalidLimit, match="drain_timeout"):
        await server2.shutdown(-1)
    await server2.shutdown()


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("max_connections", {"max_connections": 0}),
        ("overflow", {"overflow": "queue"}),
        ("idle_timeout", {"idle_timeout": 0}),
        ("read_buffer", {"read_buffer": 0}),
        ("write_high_water", {"write_high_water": 0}),
        ("write_low_water", {"write_high_water": 10, "write_low_water": 11}),
        ("ssl_handshake_timeout", {"ssl_handshake_timeout": 0}),
        ("drain_timeout", {"drain_timeout": -1}),
    ],
)
def test_limits_are_validated(field: str, kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidLimit) as info:
        Limits(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field
    assert isinstance(info.value, ValueError)


def test_limits_defaults() -> None:
    limits = Limits()
    assert limits.max_connections == 10_000
    assert limits.overflow == "pause"
    assert limits.idle_timeout == 60.0
    assert limits.low_water == limits.write_high_water // 4
    assert Limits(write_low_water=5).low_water == 5


async def test_observers_see_every_connection() -> None:
    seen: list[tuple[str, BaseProtocol]] = []

    class Observer:
        def connection_opened(self, protocol: BaseProtocol) -> None:
            seen.append(("opened", protocol))

        def connection_closed(self, protocol: BaseProtocol) -> None:
            seen.append(("closed", protocol))

    async with await start_server(Echo, host="127.0.0.1", port=0, observers=[Observer()]) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        assert await roundtrip(reader, writer, b"o") == b"o"
        await close_writer(writer)
        await asyncio.sleep(0.05)
    assert [kind for kind, _ in seen] == ["opened", "closed"]
    assert seen[0][1] is seen[1][1]


async def test_plugin_observers_are_collected_at_wiring_time() -> None:
    from flowcoro.core import hookimpl
    from flowcoro.core.plugins import Plugins, set_plugins

    opened: list[BaseProtocol] = []

    class Observer:
        def connection_opened(self, protocol: BaseProtocol) -> None:
            opened.append(protocol)

        def connection_closed(self, protocol: BaseProtocol) -> None:
            pass

    class Plugin:
        @hookimpl
        def flowcoro_net_connection_observers(self) -> list[Observer]:
            return [Observer()]

    plugins = Plugins(only=["net"])  # hermetic: this distribution's entry point only
    assert plugins.pm.has_plugin("net")
    plugin = Plugin()
    plugins.pm.register(plugin)
    set_plugins(plugins)
    try:
        async with await start_server(Echo, host="127.0.0.1", port=0) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            assert await roundtrip(reader, writer, b"p") == b"p"
            await close_writer(writer)
    finally:
        set_plugins(None)
    assert len(opened) == 1


async def test_servers_work_when_the_net_plugin_is_filtered_out() -> None:
    from flowcoro.core.plugins import Plugins, set_plugins

    set_plugins(Plugins(autoload=False))
    try:
        async with await start_server(Echo, host="127.0.0.1", port=0) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            assert await roundtrip(reader, writer, b"f") == b"f"
            await close_writer(writer)
    finally:
        set_plugins(None)


async def test_a_failing_begin_shutdown_is_logged_and_cut(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(Echo):
        def begin_shutdown(self) -> None:
            raise RuntimeError("boom")

    server = await start_server(Broken, host="127.0.0.1", port=0, observers=())
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    assert await roundtrip(reader, writer, b"b") == b"b"
    with caplog.at_level(logging.ERROR, "flowcoro.net"):
        stats = await server.shutdown(0.1)
    assert stats.cut == 1
    assert "begin_shutdown" in caplog.text
    assert await reader.read() == b""
    await close_writer(writer)


async def test_a_port_in_use_fails_cleanly() -> None:
    async with await start_server(Echo, host="127.0.0.1", port=0, observers=()) as server:
        with pytest.raises(OSError):
            await start_server(Echo, host="127.0.0.1", port=server.port, observers=())
