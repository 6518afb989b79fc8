"""Persistent history in SQLite, off the event loop.

Every database call runs in one dedicated thread, so a slow SD card never
stalls the broadcast. Writes are group-committed: messages that arrive while a
transaction is in flight go together into the next one, and the server is told
only after COMMIT, so a message is broadcast only once it is stored (a
``kill -9`` loses nothing anyone has seen). WAL with ``synchronous=NORMAL``
keeps each commit durable against a process crash without an fsync per
message; a power cut may lose the last commits, never corrupt the file.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import sqlite3
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import TypeVar

from .protocol import Message
from .retention import Retention

__all__ = ["SCHEMA_VERSION", "Store", "StoreError"]

logger = logging.getLogger(__name__)

#: One script per schema version; ``PRAGMA user_version`` records the last applied.
MIGRATIONS: tuple[str, ...] = (
    # 1: messages per room, and each room's highest id so ids are never reused
    # even after retention dropped every message.
    """
    CREATE TABLE messages (
        room TEXT NOT NULL,
        id INTEGER NOT NULL,
        ms INTEGER NOT NULL,
        name TEXT NOT NULL,
        avatar TEXT NOT NULL,
        text TEXT NOT NULL,
        PRIMARY KEY (room, id)
    ) WITHOUT ROWID;
    CREATE TABLE rooms (
        room TEXT PRIMARY KEY,
        last_id INTEGER NOT NULL
    ) WITHOUT ROWID;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

_T = TypeVar("_T")

#: (room, message, token): the token is the caller's, handed back after the write.
Item = tuple[str, Message, Hashable]


class StoreError(Exception):
    """The history database cannot be used (unreadable, or from a newer pichat)."""


class Store:
    """The history database of one state directory.

    Args:
        path: the SQLite file.
        on_stored: called on the event loop with each committed batch, in order.
        on_failed: called on the event loop with a batch that could not be stored.
    """

    def __init__(
        self,
        path: Path,
        on_stored: Callable[[list[Item]], None],
        on_failed: Callable[[list[Item]], None],
    ) -> None:
        self.path = path
        self.retention: dict[str, Retention] = {}
        self._on_stored = on_stored
        self._on_failed = on_failed
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="pichat-store"
        )
        self._db: sqlite3.Connection | None = None
        self._pending: list[Item] = []
        self._wakeup = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closing = False

    async def _call(self, function: Callable[[], _T]) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, function)

    # Opening and migrating.

    async def open(self) -> None:
        """Open (creating if needed) and migrate the database, start the writer.

        Raises:
            StoreError: when the file cannot be opened or is from a newer version.
        """
        await self._call(self._open)
        self._writer = asyncio.get_running_loop().create_task(
            self._write_loop(), name="pichat-store-writer"
        )

    def _open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA busy_timeout = 5000")
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                logger.warning("history database is not in WAL mode (%s)", mode)
            db.execute("PRAGMA synchronous = NORMAL")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                db.close()
                raise StoreError(
                    f"{self.path}: schema version {version} is newer than this pichat's "
                    f"({SCHEMA_VERSION}); upgrade pichat"
                )
            for number in range(version, SCHEMA_VERSION):
                # executescript() commits first; the BEGIN makes each step atomic.
                db.executescript(
                    f"BEGIN; {MIGRATIONS[number]} PRAGMA user_version = {number + 1}; COMMIT;"
                )
                logger.info("history database migrated to schema %d", number + 1)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"{self.path}: {exc}") from exc
        self._db = db

    async def load(self, room: str, limit: int) -> tuple[list[Message], int]:
        """The last ``limit`` messages of a room, oldest first, and its highest id."""
        return await self._call(lambda: self._load(room, limit))

    def _load(self, room: str, limit: int) -> tuple[list[Message], int]:
        assert self._db is not None
        rows = self._db.execute(
            "SELECT id, ms, name, avatar, text FROM messages WHERE room = ? "
            "ORDER BY id DESC LIMIT ?",
            (room, limit),
        ).fetchall()
        row = self._db.execute("SELECT last_id FROM rooms WHERE room = ?", (room,)).fetchone()
        last_id = row[0] if row else 0
        return [Message(*r) for r in reversed(rows)], last_id

    # Writing.

    def append(self, room: str, message: Message, token: Hashable) -> None:
        """Queue a message; ``on_stored`` reports it once committed."""
        self._pending.append((room, message, token))
        self._wakeup.set()

    async def _write_loop(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            batch, self._pending = self._pending, []
            if batch:
                try:
                    await self._call(functools.partial(self._write, batch))
                except (sqlite3.Error, OSError):
                    logger.error("storing %d messages failed", len(batch), exc_info=True)
                    self._on_failed(batch)
                else:
                    self._on_stored(batch)
            if self._closing and not self._pending:
                return

    def _write(self, batch: list[Item]) -> None:
        assert self._db is not None
        db = self._db
        last: dict[str, int] = {}
        db.execute("BEGIN")
        try:
            db.executemany(
                "INSERT INTO messages (room, id, ms, name, avatar, text) VALUES (?, ?, ?, ?, ?, ?)",
                [(room, m.id, m.ms, m.name, m.avatar, m.text) for room, m, _ in batch],
            )
            for room, message, _ in batch:
                last[room] = max(last.get(room, 0), message.id)
            for room, last_id in last.items():
                db.execute(
                    "INSERT INTO rooms (room, last_id) VALUES (?, ?) ON CONFLICT (room) "
                    "DO UPDATE SET last_id = max(last_id, excluded.last_id)",
                    (room, last_id),
                )
                retention = self.retention.get(room)
                if retention is not None:
                    db.execute(
                        "DELETE FROM messages WHERE room = ? AND id < ?",
                        (room, retention.first_kept_id(last_id)),
                    )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    async def expire(self, room: str, now_ms: int) -> int:
        """Apply a room's retention to the table; returns how many rows went."""
        retention = self.retention.get(room)
        if retention is None:
            return 0
        return await self._call(lambda: self._expire(room, retention, now_ms))

    def _expire(self, room: str, retention: Retention, now_ms: int) -> int:
        assert self._db is not None
        db = self._db
        row = db.execute("SELECT last_id FROM rooms WHERE room = ?", (room,)).fetchone()
        if row is None:
            return 0
        removed = db.execute(
            "DELETE FROM messages WHERE room = ? AND id < ?",
            (room, retention.first_kept_id(row[0])),
        ).rowcount
        oldest = retention.oldest_date_ms(now_ms)
        if oldest is not None:
            removed += db.execute(
                "DELETE FROM messages WHERE room = ? AND ms < ?", (room, oldest)
            ).rowcount
        return removed

    async def close(self) -> None:
        """Write what is queued, stop the writer, close the database."""
        if self._writer is not None:
            # The writer drains what is queued, reports it, then returns.
            self._closing = True
            self._wakeup.set()
            await self._writer
            self._writer = None
        if self._db is not None:
            db = self._db
            await self._call(db.close)
            self._db = None
        self._executor.shutdown(wait=True)
