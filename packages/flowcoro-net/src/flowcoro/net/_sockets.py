"""Listening sockets made by hand, so that options (SO_REUSEPORT, IPV6_V6ONLY, backlog) are ours
and the server can pause accepting by closing the loop's copy while keeping the socket listening."""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from typing import Any

from flowcoro.net.errors import InvalidLimit

__all__ = ["tcp_sockets", "unix_socket", "reserve_port"]


def _addrinfos(host: str | None, port: int) -> list[tuple[int, int, int, tuple[Any, ...]]]:
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    unique: dict[tuple[int, tuple[Any, ...]], tuple[int, int, int, tuple[Any, ...]]] = {}
    for family, type_, proto, _canon, addr in infos:
        unique.setdefault((family, tuple(addr)), (family, type_, proto, tuple(addr)))
    return list(unique.values())


def tcp_sockets(
    host: str | None, port: int, *, reuse_port: bool, backlog: int
) -> list[socket.socket]:
    """Bound, listening, non-blocking TCP sockets for every address ``host`` resolves to.

    Created with ``proto=IPPROTO_TCP`` (from getaddrinfo) so that both loops set TCP_NODELAY on
    accepted connections. IPv6 sockets are V6ONLY so that ``::`` and ``0.0.0.0`` coexist.
    """
    if reuse_port and not hasattr(socket, "SO_REUSEPORT"):  # pragma: no cover - Linux has it
        raise InvalidLimit("reuse_port", "SO_REUSEPORT is not supported on this platform")
    sockets: list[socket.socket] = []
    bound_port = port
    try:
        for family, type_, proto, addr in _addrinfos(host, port):
            sock = socket.socket(family, type_, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and bound_port != 0:
                # Several addresses for port 0: give them all the port the first one got.
                addr = (addr[0], bound_port, *addr[2:])
            sock.bind(addr)
            bound_port = sock.getsockname()[1]
            sock.listen(backlog)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def unix_socket(path: str, *, backlog: int) -> socket.socket:
    """A listening Unix socket at ``path``; a stale socket file left there is removed first
    (anything else at that path is an error, never deleted)."""
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def reserve_port(host: str | None, port: int) -> tuple[socket.socket, int]:
    """Bind (without listening) a SO_REUSEPORT socket to hold a port number for workers that
    bind their own sockets to it; returns the socket and the port."""
    family = socket.AF_INET6 if host and ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host or ("::" if family == socket.AF_INET6 else "0.0.0.0"), port))
    except BaseException:
        sock.close()
        raise
    return sock, sock.getsockname()[1]
