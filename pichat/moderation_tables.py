"""The moderation tables of the history database: bans, room rules, the moderation log.

A part of :class:`pichat.store.Store`, kept apart because it is a concern of
its own: the few rows moderators change, queued on the store's database thread
behind the messages already reported (so they are applied in order with them)
and read through it.
"""

from __future__ import annotations

import abc
import json
import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from .bans import Ban
from .history import LogEntry
from .state_dir import StoreError

__all__ = ["ModerationTables"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


class ModerationTables(abc.ABC):
    """Bans, room rules and the moderation log, on the store's connection and thread.

    The store supplies the two ways in: a read on its database thread and a
    change queued behind the messages already waiting.
    """

    path: Path
    _db: sqlite3.Connection | None

    @abc.abstractmethod
    async def _call(self, function: Callable[[], _T]) -> _T:
        """Run ``function`` on the store's database thread."""

    @abc.abstractmethod
    def _queue(self, change: Callable[[sqlite3.Connection], None]) -> None:
        """Apply ``change`` on the store's thread, after every message already reported."""

    async def load_bans(self) -> list[Ban]:
        """Every stored ban."""

        def query() -> list[Ban]:
            assert self._db is not None
            rows = self._db.execute(
                "SELECT address, name, until_ms, reason, room, by, created_ms, label FROM bans "
                "ORDER BY created_ms"
            ).fetchall()
            return [Ban(*row) for row in rows]

        try:
            return await self._call(query)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot read the bans: {exc}") from exc

    def save_bans(self, bans: list[Ban]) -> None:
        """Queue replacing the stored bans with ``bans`` (they are few)."""
        rows = [
            (b.address, b.name, b.until_ms, b.reason, b.room, b.by, b.created_ms, b.label)
            for b in bans
        ]

        def change(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM bans")
            db.executemany("INSERT OR REPLACE INTO bans VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)

        self._queue(change)

    async def load_rules(self) -> object:
        """The stored room rules, as saved (``None`` when there are none)."""

        def query() -> object:
            assert self._db is not None
            row = self._db.execute("SELECT value FROM state WHERE key = 'room_rules'").fetchone()
            return None if row is None else json.loads(row[0])

        try:
            return await self._call(query)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot read the room rules: {exc}") from exc
        except ValueError:
            logger.warning(
                "%s: the stored room rules are not JSON; rooms start unlocked", self.path
            )
            return None

    def save_rules(self, rules: dict[str, Any]) -> None:
        """Queue replacing the stored room rules."""
        value = json.dumps(rules, ensure_ascii=False, sort_keys=True)

        def change(db: sqlite3.Connection) -> None:
            db.execute("INSERT OR REPLACE INTO state VALUES ('room_rules', ?)", (value,))

        self._queue(change)

    def record(self, entry: LogEntry) -> None:
        """Queue a line of the moderation log."""

        def change(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO modlog (ms, room, actor, action, detail) VALUES (?, ?, ?, ?, ?)",
                (entry.ms, entry.room, entry.actor, entry.action, entry.detail),
            )

        self._queue(change)

    async def load_log(self, since_ms: int, limit: int) -> list[LogEntry]:
        """The newest ``limit`` log lines from ``since_ms`` on, oldest first."""

        def query() -> list[LogEntry]:
            assert self._db is not None
            rows = self._db.execute(
                "SELECT ms, room, actor, action, detail FROM modlog WHERE ms >= ? "
                "ORDER BY seq DESC LIMIT ?",
                (since_ms, limit),
            ).fetchall()
            return [LogEntry(*row) for row in reversed(rows)]

        return await self._call(query)
