"""Persistent history in SQLite, off the event loop: the :class:`~.history.History` of one Pi.

Every database call runs in one dedicated thread, so a slow SD card never
stalls the broadcast. Writes are group-committed: messages that arrive while a
transaction is in flight go together into the next one, and the listener is
told only after COMMIT, so a message is broadcast only once it is stored (a
``kill -9`` loses nothing anyone has seen). WAL with ``synchronous=NORMAL``
keeps each commit durable against a process crash without an fsync per
message; a power cut may lose the last commits, never corrupt the file.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from .dbthread import DatabaseThread
from .history import Deletion, Entry, HistoryListener, Loaded
from .moderation_tables import ModerationTables
from .protocol import Message
from .retention import Cut
from .schema import MIGRATIONS, SCHEMA_VERSION
from .state_dir import StoreError

__all__ = ["Store", "new_epoch"]

logger = logging.getLogger(__name__)


_T = TypeVar("_T")


def new_epoch() -> str:
    """A fresh epoch: random, so a replaced database never repeats an old one."""
    return secrets.token_urlsafe(12)


def _message(row: tuple[int, int, str, str, str, int, int]) -> Message:
    return Message(*row[:5], moderator=bool(row[5]), announcement=bool(row[6]))


class Store(ModerationTables):
    """The history database of one state directory.

    Args:
        path: the SQLite file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._thread = DatabaseThread("pichat-store")
        self._db: sqlite3.Connection | None = None
        self._pending: list[Entry] = []
        # Deletions and ban writes, applied before the next batch of messages.
        self._changes: list[Callable[[sqlite3.Connection], None]] = []
        self._wakeup = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        # Failures are logged once, with a count when they end (a full disk
        # would otherwise log a traceback per message).
        self._failed_messages = 0
        #: Write transactions that failed, since start (for monitoring).
        self.failures = 0
        #: Called with each commit's duration in seconds, from the store's thread.
        self.commit_observer: Callable[[float], None] | None = None

    async def _call(self, function: Callable[[], _T]) -> _T:
        return await self._thread.call(function)

    @property
    def healthy(self) -> bool:
        """False from a failed write until the next successful one."""
        return self._failed_messages == 0

    # Opening and migrating.

    async def open(self) -> None:
        """Open (creating if needed) and migrate the database.

        Raises:
            StoreError: when the file cannot be opened, is damaged or is from a
                newer version.
        """
        await self._call(self._open)

    def _open(self) -> None:
        db: sqlite3.Connection | None = None
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
            # Reading every table once finds a damaged file now, not mid-chat.
            db.execute("SELECT count(*) FROM rooms").fetchone()
            db.execute("SELECT count(*), max(ms) FROM messages").fetchone()
        except sqlite3.OperationalError as exc:
            # Cannot be opened (a directory, no permission, locked): not damage.
            if db is not None:
                db.close()
            raise StoreError(f"{self.path}: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            verdict = self._verdict(db)
            if db is not None:
                db.close()
            raise StoreError(
                f"{self.path}: the database is damaged ({exc}; integrity check: {verdict}); "
                "restore a backup, or move the file aside to start an empty history"
            ) from exc
        except (OSError, sqlite3.Error, StoreError) as exc:
            if db is not None:
                db.close()
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"{self.path}: {exc}") from exc
        self._db = db

    @staticmethod
    def _verdict(db: sqlite3.Connection | None) -> str:
        if db is None:
            return "not run"
        try:
            rows = db.execute("PRAGMA quick_check(3)").fetchall()
        except sqlite3.Error as exc:
            return f"failed: {exc}"
        return "; ".join(str(row[0]) for row in rows)

    def start(self, listener: HistoryListener) -> None:
        """Start the writer; committed and failed batches go to ``listener``."""
        self._writer = asyncio.get_running_loop().create_task(
            self._write_loop(listener), name="pichat-store-writer"
        )

    async def load(self, room: str, limit: int) -> Loaded:
        """The last ``limit`` messages of a room, oldest first, its last id and epoch."""
        try:
            return await self._call(lambda: self._load(room, limit))
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot read room {room}: {exc}") from exc

    def _load(self, room: str, limit: int) -> Loaded:
        assert self._db is not None
        db = self._db
        rows = db.execute(
            "SELECT id, ms, name, avatar, text, moderator, announcement FROM messages "
            "WHERE room = ? ORDER BY id DESC LIMIT ?",
            (room, limit),
        ).fetchall()
        row = db.execute("SELECT last_id, epoch FROM rooms WHERE room = ?", (room,)).fetchone()
        last_id, epoch = row if row else (0, "")
        if not epoch:
            # The room's history starts here (or predates epochs): name it now,
            # so that a client's cursor is tied to this history from the start.
            epoch = new_epoch()
            db.execute(
                "INSERT INTO rooms (room, last_id, epoch) VALUES (?, ?, ?) ON CONFLICT (room) "
                "DO UPDATE SET epoch = excluded.epoch",
                (room, last_id, epoch),
            )
        return Loaded([_message(r) for r in reversed(rows)], last_id, epoch)

    async def messages_after(self, room: str, after: int, limit: int) -> list[Message]:
        """Up to ``limit`` stored messages of ``room`` with an id above ``after``."""

        def query() -> list[Message]:
            assert self._db is not None
            rows = self._db.execute(
                "SELECT id, ms, name, avatar, text, moderator, announcement FROM messages "
                "WHERE room = ? AND id > ? ORDER BY id LIMIT ?",
                (room, after, limit),
            ).fetchall()
            return [_message(r) for r in rows]

        return await self._call(query)

    # Writing.

    def append(self, entry: Entry) -> None:
        """Queue a message; the listener hears once it is committed."""
        self._pending.append(entry)
        self._wakeup.set()

    def delete(self, deletion: Deletion) -> None:
        """Queue the removal of messages (before the next batch of messages)."""

        def change(db: sqlite3.Connection) -> None:
            db.executemany(
                "DELETE FROM messages WHERE room = ? AND id = ?",
                [(deletion.room, id_) for id_ in deletion.ids],
            )
            if deletion.through:
                db.execute(
                    "DELETE FROM messages WHERE room = ? AND id <= ?",
                    (deletion.room, deletion.through),
                )

        self._queue(change)

    def _queue(self, change: Callable[[sqlite3.Connection], None]) -> None:
        self._changes.append(change)
        self._wakeup.set()

    def _apply(self, changes: list[Callable[[sqlite3.Connection], None]]) -> None:
        assert self._db is not None
        db = self._db
        db.execute("BEGIN")
        try:
            for change in changes:
                change(db)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    async def _write_loop(self, listener: HistoryListener) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            batch, self._pending = self._pending, []
            changes, self._changes = self._changes, []
            if changes:
                try:
                    await self._call(functools.partial(self._apply, changes))
                except (sqlite3.Error, OSError) as exc:
                    # Memory already changed; the database catches up on the next
                    # deletion or ban, or the moderator repeats it after a restart.
                    logger.error("cannot store a moderation change: %s (%s)", exc, self.path)
            if batch:
                try:
                    await self._call(functools.partial(self._write, batch))
                except (sqlite3.Error, OSError) as exc:
                    if self._failed_messages == 0:
                        logger.error("cannot store messages: %s (%s)", exc, self.path)
                    self._failed_messages += len(batch)
                    self.failures += 1
                    listener.failed(batch)
                else:
                    if self._failed_messages:
                        logger.warning(
                            "storing messages again; %d could not be stored",
                            self._failed_messages,
                        )
                        self._failed_messages = 0
                    listener.committed(batch)
            if self._closing and not self._pending and not self._changes:
                return

    def _write(self, batch: list[Entry]) -> None:
        assert self._db is not None
        db = self._db
        newest: dict[str, Entry] = {}
        started = time.perf_counter()
        db.execute("BEGIN")
        try:
            db.executemany(
                "INSERT INTO messages (room, id, ms, name, avatar, text, moderator, announcement) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        e.room,
                        e.message.id,
                        e.message.ms,
                        e.message.name,
                        e.message.avatar,
                        e.message.text,
                        int(e.message.moderator),
                        int(e.message.announcement),
                    )
                    for e in batch
                ],
            )
            for entry in batch:
                newest[entry.room] = entry
            for room, entry in newest.items():
                db.execute(
                    "INSERT INTO rooms (room, last_id, epoch) VALUES (?, ?, '') "
                    "ON CONFLICT (room) DO UPDATE SET last_id = max(last_id, excluded.last_id)",
                    (room, entry.message.id),
                )
                self._delete(room, entry.cut)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        if self.commit_observer is not None:
            self.commit_observer(time.perf_counter() - started)

    def _delete(self, room: str, cut: Cut) -> int:
        assert self._db is not None
        # Two statements, not one with OR: ``id < ?`` is a range of the primary
        # key, while the OR made SQLite read every row of the room on every
        # commit (a quarter of a message's in-server time with 1000 retained).
        # Without an age limit the date part matches nothing and is skipped.
        cursor = self._db.execute(
            "DELETE FROM messages WHERE room = ? AND id < ?", (room, cut.first_id)
        )
        removed = cursor.rowcount
        if cut.oldest_ms > 0:
            cursor = self._db.execute(
                "DELETE FROM messages WHERE room = ? AND ms < ?", (room, cut.oldest_ms)
            )
            removed += cursor.rowcount
        return removed

    async def trim(self, room: str, cut: Cut) -> int:
        """Apply a retention cut to the table; returns how many rows went."""
        return await self._call(lambda: self._delete(room, cut))

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
        self._thread.stop()
