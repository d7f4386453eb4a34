"""Redis-specific refinements of the `flowcoro.db.errors` hierarchy."""

from __future__ import annotations

from flowcoro.db.errors import CommandError, DBConnectionError, TransactionError

__all__ = ["RedisCommandError", "NoScriptError", "WatchError", "RedisProtocolError"]


class RedisCommandError(CommandError):
    """An error reply; ``code`` is its first word (``ERR``, ``WRONGTYPE``, ``NOSCRIPT`` ...)."""

    def __init__(self, message: str, command: str = "") -> None:
        super().__init__(f"{message} (command {command})" if command else message)
        self.code = message.split(" ", 1)[0] if message else "ERR"
        self.reply = message
        self.command = command


class NoScriptError(RedisCommandError):
    """EVALSHA named a script the server does not have cached."""


class WatchError(TransactionError):
    """A watched key changed before EXEC: the transaction did not run; retry it."""


class RedisProtocolError(DBConnectionError):
    """The server sent something that is not a valid reply here; the connection was discarded."""
