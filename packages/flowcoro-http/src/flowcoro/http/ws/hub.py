"""`Hub`: rooms of WebSocket connections, fan-out through the core pub/sub broker.

Every send goes through the broker (``app.pubsub()``; in-process by default, Redis when
flowcoro-db is installed and ``FLOWCORO_REDIS_URL`` is set), so a message published in one
worker reaches the members connected to any other. Each process's hub holds one pattern
subscription and delivers locally: per room a core `Broadcast`, and per member one bounded
`Subscriber` (``queue_size`` messages, policy ``policy``: ``"drop_oldest"`` by default, or
``"disconnect"`` which closes a too-slow client with 1013) drained by a small writer task, so
one slow client never slows a room.

Channels: ``<prefix>r.<room>`` (a room), ``<prefix>c.<connection id>`` (one connection),
``<prefix>all`` (everyone). Payloads carry one type byte (``t`` text, ``b`` binary).
Presence (`members`) is what this process sees.
"""

from __future__ import annotations

import asyncio
from typing import Any

from flowcoro.core.abc import PubSubBroker, Subscription
from flowcoro.core.broadcast import Broadcast, SlowPolicy, Subscriber
from flowcoro.core.errors import BrokenResourceError, ClosedResourceError
from flowcoro.core.logger import get_logger
from flowcoro.http.ws._connection import Data, WebSocket, WebSocketClosed, prepared

__all__ = ["Hub"]

log = get_logger("flowcoro.http.ws.hub")
_EVERYONE = "\x00all"


def _encode(data: Data) -> bytes:
    if isinstance(data, str):
        return b"t" + data.encode()
    if isinstance(data, bytes | bytearray | memoryview):
        return b"b" + bytes(data)
    raise TypeError(f"data: expected str or bytes, got {type(data).__name__}")


def _decode(payload: bytes) -> Data:
    kind, body = payload[:1], payload[1:]
    return body.decode() if kind == b"t" else body


class Hub:
    """Rooms and fan-out. ``hub = Hub(app.pubsub())``; ``await hub.start()`` once (or
    ``async with hub``), then in a handler ``async with hub.connect(ws): await hub.join(ws, r)``.
    """

    def __init__(
        self,
        broker: PubSubBroker,
        *,
        prefix: str = "flowcoro.ws.",
        queue_size: int = 256,
        policy: SlowPolicy = "drop_oldest",
    ) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size: must be >= 1, got {queue_size!r}")
        if policy == "wait":
            raise ValueError("policy: 'wait' would let one slow client stall a room")
        self.broker = broker
        self.prefix = prefix
        self.queue_size = queue_size
        self.policy: SlowPolicy = policy
        self._rooms: dict[str, Broadcast[Data]] = {}
        self._members: dict[str, dict[str, _Member]] = {}
        self._conns: dict[str, WebSocket] = {}
        self._writers: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._sub: Subscription | None = None
        self._reader: asyncio.Task[None] | None = None

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        if self._sub is not None:
            return
        self._sub = await self.broker.subscribe(patterns=(self.prefix + "*",))
        self._reader = asyncio.get_running_loop().create_task(self._read(self._sub))

    async def aclose(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        sub, self._sub = self._sub, None
        if sub is not None:
            await sub.aclose()
        writers = list(self._writers.values())
        self._writers.clear()
        for task in writers:
            task.cancel()
        await asyncio.gather(*writers, return_exceptions=True)
        for room in self._rooms.values():
            room.close()
        self._rooms.clear()
        self._members.clear()
        self._conns.clear()

    async def __aenter__(self) -> Hub:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    # -- membership -------------------------------------------------------------------------

    def connect(self, ws: WebSocket) -> _Attached:
        """``async with hub.connect(ws):`` registers ``ws`` (it receives `broadcast` and
        `send_to`) and removes it from every room when the block ends."""
        return _Attached(self, ws)

    def add(self, ws: WebSocket) -> None:
        if ws.id in self._conns:
            return
        self._conns[ws.id] = ws
        self._subscribe(ws, _EVERYONE)
        ws.on_close.append(self.remove)

    def remove(self, ws: WebSocket) -> None:
        """Leave every room (called automatically when the connection closes)."""
        if self._conns.pop(ws.id, None) is None:
            return
        for room in [r for (cid, r) in self._writers if cid == ws.id]:
            self._unsubscribe(ws, room)

    async def join(self, ws: WebSocket, room: str) -> None:
        if not isinstance(room, str) or not room:
            raise ValueError(f"room: expected a non-empty string, got {room!r}")
        self.add(ws)
        self._subscribe(ws, room)

    async def leave(self, ws: WebSocket, room: str) -> None:
        self._unsubscribe(ws, room)

    def members(self, room: str) -> list[str]:
        """Presence: the ids of the connections in ``room`` on this process."""
        return sorted(self._members.get(room, ()))

    def rooms(self, ws: WebSocket) -> list[str]:
        return sorted(r for (cid, r) in self._writers if cid == ws.id and r != _EVERYONE)

    def _subscribe(self, ws: WebSocket, room: str) -> None:
        key = (ws.id, room)
        if key in self._writers:
            return
        hub = self._rooms.get(room)
        if hub is None:
            hub = self._rooms[room] = Broadcast(capacity=self.queue_size, policy=self.policy)
        member = _Member(ws, hub.subscribe())
        self._members.setdefault(room, {})[ws.id] = member
        task = asyncio.get_running_loop().create_task(self._write(member, room))
        self._writers[key] = task

    def _unsubscribe(self, ws: WebSocket, room: str) -> None:
        task = self._writers.pop((ws.id, room), None)
        if task is not None:
            task.cancel()
        members = self._members.get(room)
        if members is not None:
            members.pop(ws.id, None)
            if not members:
                del self._members[room]
                hub = self._rooms.pop(room, None)
                if hub is not None:
                    hub.close()

    async def _write(self, member: _Member, room: str) -> None:
        """One member's writer: its bounded queue to its socket."""
        ws = member.ws
        try:
            async with member.sub as sub:
                async for data in sub:
                    member.sending = True
                    await ws.send(data)
                    member.sending = False
        except BrokenResourceError:
            # policy "disconnect": this client fell queue_size messages behind.
            if ws.open:
                await ws.close(1013, "too slow: messages were dropped")
        except (WebSocketClosed, ClosedResourceError):
            pass
        finally:
            if self._writers.get((ws.id, room)) is asyncio.current_task():
                self._unsubscribe(ws, room)

    # -- sending ----------------------------------------------------------------------------

    async def publish(self, room: str, data: Data) -> None:
        """Send to every member of ``room``, in every process."""
        await self.broker.publish(self.prefix + "r." + room, _encode(data))

    async def broadcast(self, data: Data) -> None:
        """Send to every connection registered with a hub, in every process."""
        await self.broker.publish(self.prefix + "all", _encode(data))

    async def send_to(self, conn_id: str, data: Data) -> None:
        """Send to one connection, wherever it is connected."""
        await self.broker.publish(self.prefix + "c." + conn_id, _encode(data))

    async def _read(self, sub: Subscription) -> None:
        prefix = self.prefix
        n = len(prefix)
        async for message in sub:
            channel = message.channel
            if not channel.startswith(prefix):  # pragma: no cover - the pattern guarantees it
                continue
            rest = channel[n:]
            data = _decode(message.data)
            if rest.startswith("c."):
                ws = self._conns.get(rest[2:])
                if ws is not None:
                    self._direct(ws, data)
                continue
            if rest.startswith("r."):
                name = rest[2:]
            elif rest == "all":
                name = _EVERYONE
            else:
                continue
            self._fan_out(self._members.get(name), data)

    def _fan_out(self, members: dict[str, _Member] | None, data: Data) -> None:
        """Deliver to a room. A member that is caught up (its queue empty, its writer idle, its
        socket below the write limit) gets the message written at once, one frame serialized
        for all of them; the others get it through their bounded queue, under the policy."""
        if not members:
            return
        frame = prepared(data)
        for member in members.values():
            ws = member.ws
            if not member.sending and not len(member.sub) and not ws.writing_paused and ws.open:
                ws.write_prepared(frame, data)
            else:
                # The member is behind: its own bounded queue, with the room's slow policy.
                member.sub._deliver(data)

    def _direct(self, ws: WebSocket, data: Data) -> None:
        """One connection: written at once; while its write buffer is over the high water mark
        the message is dropped ("drop_oldest" keeps what is queued) or the client cut off
        ("disconnect"), so a direct message never grows a buffer without bound either."""
        if ws.writing_paused:
            if self.policy == "disconnect":
                ws.cut()
            return
        try:
            ws.send_nowait(data)
        except WebSocketClosed:
            pass


class _Member:
    __slots__ = ("sending", "sub", "ws")

    def __init__(self, ws: WebSocket, sub: Subscriber[Data]) -> None:
        self.ws = ws
        self.sub = sub
        self.sending = False


class _Attached:
    __slots__ = ("hub", "ws")

    def __init__(self, hub: Hub, ws: WebSocket) -> None:
        self.hub = hub
        self.ws = ws

    async def __aenter__(self) -> WebSocket:
        self.hub.add(self.ws)
        return self.ws

    async def __aexit__(self, *exc: Any) -> None:
        self.hub.remove(self.ws)
