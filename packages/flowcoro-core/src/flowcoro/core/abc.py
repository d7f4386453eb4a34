"""Interfaces that plugins implement and that distributions provide to each other.

A consumer (the WebSocket hub, RPC discovery) asks the app for an implementation by the name the
configuration gives; a provider (flowcoro-db's Redis broker) registers it through a hook. Neither
imports the other.
"""

from __future__ import annotations

import argparse
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, ClassVar, NamedTuple

if TYPE_CHECKING:
    from types import TracebackType
    from typing import Self

    from flowcoro.core.app import App
    from flowcoro.core.settings import Settings

__all__ = ["Command", "Component", "Message", "PubSubBroker", "Subscription"]


class Component(ABC):
    """Something the app starts before serving and stops after (a pool, a server, an exporter).

    Components start in dependency order (`depends_on` names other components) and stop in the
    reverse order, each bounded by its timeout.
    """

    name: str = ""
    depends_on: tuple[str, ...] = ()
    start_timeout: float = 30.0
    stop_timeout: float = 30.0

    @abstractmethod
    async def start(self, app: App) -> None:
        """Acquire resources; raise to refuse start-up."""

    @abstractmethod
    async def stop(self) -> None:
        """Release resources; must be safe to call after a failed or partial start."""


class Command(ABC):
    """A ``flowcoro`` subcommand contributed by a plugin through ``flowcoro_cli_commands``.

    `run` receives the parsed arguments; ``args.flowcoro_plugins`` is the plugin host in use."""

    name: ClassVar[str]
    help: ClassVar[str] = ""

    def configure(self, parser: argparse.ArgumentParser) -> None:  # noqa: B027 - optional hook
        """Add arguments to this subcommand's parser."""

    @abstractmethod
    def run(self, args: argparse.Namespace) -> int:
        """Run the command; return the process exit status."""


class Message(NamedTuple):
    channel: str
    data: bytes
    pattern: str | None = None


class Subscription(ABC):
    """Messages of the subscribed channels, as an async iterator; close it (or leave its
    ``async with`` block) to unsubscribe. Bounded: see the broker for its slow-reader policy."""

    @abstractmethod
    def __aiter__(self) -> AsyncIterator[Message]: ...

    @abstractmethod
    async def aclose(self) -> None: ...

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class PubSubBroker(ABC):
    """Publish/subscribe between tasks, processes or machines, by channel name.

    Implementations register their class through ``flowcoro_pubsub_brokers`` with a unique
    ``PLUGIN_NAME``; ``App.pubsub()`` builds the one the ``pubsub_broker`` setting names.
    """

    PLUGIN_NAME: ClassVar[str]

    @classmethod
    @abstractmethod
    def from_settings(cls, settings: Settings) -> Self:
        """Build a broker from the app's settings (a bad value raises `ConfigError`)."""

    @abstractmethod
    async def publish(self, channel: str, data: bytes) -> int:
        """Send ``data`` to every subscriber of ``channel``; return how many received it (as far
        as this broker knows)."""

    @abstractmethod
    async def subscribe(self, *channels: str, patterns: tuple[str, ...] = ()) -> Subscription:
        """Subscribe to channels (and glob patterns); the subscription is active on return."""

    @abstractmethod
    async def aclose(self) -> None:
        """Close every subscription and release connections."""
