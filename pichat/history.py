"""The history interface the chat engine stores through, whatever keeps the messages.

Today one implementation exists, :class:`pichat.store.Store` (SQLite in a
thread). A shared backplane for several daemons is a second implementation of
the same few calls, not a rewrite of the engine: the engine appends a message,
and broadcasts it only when the history reports it committed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable
from typing import Any, Protocol

from .bans import Ban
from .protocol import Message
from .retention import Cut

__all__ = ["Deletion", "Entry", "History", "HistoryListener", "Loaded", "LogEntry"]


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    """A message on its way to the history; ``sender`` is handed back after the write.

    ``cut`` is the room's retention once this message is its newest: the history
    applies it in the same write, the engine to its memory on commit.
    """

    room: str
    message: Message
    sender: Hashable
    cut: Cut


@dataclasses.dataclass(frozen=True, slots=True)
class Deletion:
    """Messages a moderator removed: the listed ids, and every id up to ``through``.

    Only committed messages are deleted (the engine checks), so a deletion never
    races the write of the message it names; ``through`` (a ``clear``) is the
    room's newest committed id, and messages still on their way stay.
    """

    room: str
    ids: tuple[int, ...] = ()
    through: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class LogEntry:
    """One line of the moderation log: when, where, who, what, and its details as JSON."""

    ms: int
    room: str
    actor: str
    action: str
    detail: str


@dataclasses.dataclass(frozen=True, slots=True)
class Loaded:
    """A room as the history holds it: retained messages (oldest first), last id, epoch."""

    messages: list[Message]
    last_id: int
    epoch: str


class HistoryListener(Protocol):
    """Who hears about writes: called on the event loop, batches in append order."""

    def committed(self, batch: list[Entry]) -> None:
        """These entries are durable: they may be shown to anyone."""

    def failed(self, batch: list[Entry]) -> None:
        """These entries could not be stored: nobody may see them."""


class History(Protocol):
    """What the chat engine needs from a history."""

    def start(self, listener: HistoryListener) -> None:
        """Begin writing; results go to ``listener``."""

    async def load(self, room: str, limit: int) -> Loaded:
        """The last ``limit`` messages of a room, its last id and its epoch.

        A room the history has never seen gets a new epoch here, kept from then on.
        """

    def append(self, entry: Entry) -> None:
        """Queue a message; the listener hears once it is committed (or failed)."""

    async def messages_after(self, room: str, after: int, limit: int) -> list[Message]:
        """Up to ``limit`` retained messages with an id above ``after``, oldest first."""

    async def trim(self, room: str, cut: Cut) -> int:
        """Delete what ``cut`` does not keep; returns how many messages went."""

    def delete(self, deletion: Deletion) -> None:
        """Queue the removal of messages; applied in order with the writes."""

    async def load_bans(self) -> list[Ban]:
        """Every ban stored (expired ones included; the engine drops those)."""

    def save_bans(self, bans: list[Ban]) -> None:
        """Queue a write that replaces the stored bans with ``bans``."""

    async def load_rules(self) -> object:
        """The stored room rules (lock, slow mode, mutes) as saved; ``None`` if none."""

    def save_rules(self, rules: dict[str, Any]) -> None:
        """Queue a write that replaces the stored room rules (a JSON-able mapping)."""

    def record(self, entry: LogEntry) -> None:
        """Queue a line of the moderation log."""

    async def load_log(self, since_ms: int, limit: int) -> list[LogEntry]:
        """The newest ``limit`` log lines from ``since_ms`` on, oldest first."""

    @property
    def healthy(self) -> bool:
        """False while writes fail (disk full, database gone)."""
