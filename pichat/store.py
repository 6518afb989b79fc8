"""Persistent history in SQLite: the :class:`~.history.History` of one Pi.

Writes are group-committed, and the listener is told only after COMMIT, so a
message is broadcast only once it is stored (a ``kill -9`` loses nothing anyone
has seen). WAL with ``synchronous=NORMAL`` keeps each commit durable against a
process crash without an fsync per message; a power cut may lose the last
commits, never corrupt the file.

Where a commit runs is a latency trade. Reads, moderation changes and the WAL
checkpoint (the one step that fsyncs, so the one a slow SD card stalls) run on
a database thread of their own. A batch of messages is committed on the event
loop itself when that thread is idle: with WAL and ``synchronous=NORMAL`` that
COMMIT is a ``write()`` into the page cache, and handing it to the thread cost
more than the commit (in a room of 10, 0.19 ms of a message's 0.92 ms in the
server went to the hand-off and back: two thread switches and two loop turns).
While the thread is busy, messages wait for it and go in its next group commit,
a commit on the loop that takes longer than :data:`INLINE_BUDGET` (a slow
disk) sends every commit to the thread for :data:`THREAD_AFTER_SLOW` seconds, and
one that finds the database locked by another process (an administrator's
``sqlite3``) hands its batch to the thread at once, which waits for the lock
(:func:`~.store_file.patiently`): nothing ever waits inside SQLite on the loop.
Opening and the pragmas are :mod:`.store_file`, the statements of a commit
:mod:`.store_writes`.
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
from .state_dir import StoreError
from .store_file import busy, open_database, patiently
from .store_writes import delete_cut, write_batch

__all__ = ["Store", "new_epoch"]

logger = logging.getLogger(__name__)


_T = TypeVar("_T")

#: A commit on the event loop longer than this (seconds) means a slow disk ...
INLINE_BUDGET = 0.01
#: ... and commits go to the database thread for this long (seconds).
THREAD_AFTER_SLOW = 60.0
#: Appended this soon (seconds) after a commit made at once, a message is part
#: of a burst (frames of one read, a busy room) and waits for the turn's end.
BURST_GAP = 0.001
#: About how many bytes the WAL may grow between checkpoints (SQLite's own
#: automatic checkpoint, 1000 pages, is off: it would run inside a COMMIT).
CHECKPOINT_BYTES = 4 * 1024 * 1024
#: What a commit adds to the WAL besides its messages' text: a few pages.
COMMIT_OVERHEAD = 3 * 4096
#: What a message adds besides its text.
ROW_OVERHEAD = 128


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
        self._cursor: sqlite3.Cursor | None = None
        self._pending: list[Entry] = []
        # Deletions and ban writes, applied before the next batch of messages.
        self._changes: list[Callable[[sqlite3.Connection], None]] = []
        self._wakeup = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._listener: HistoryListener | None = None
        # The writer task is between its wake-up and its next wait (it may be
        # using the database through the thread).
        self._writing = False
        self._inline: asyncio.Handle | None = None
        self._burst_until = 0.0  # monotonic: appends wait for the turn's end until then
        self._thread_until = 0.0  # monotonic: commits go to the thread until then
        self._wal_bytes = 0  # written since the last checkpoint, roughly
        self._closing = False
        # Failures are logged once, with a count when they end (a full disk
        # would otherwise log a traceback per message).
        self._failed_messages = 0
        #: Write transactions that failed, since start (for monitoring).
        self.failures = 0
        #: Called with each commit's duration in seconds, from the thread that committed.
        self.commit_observer: Callable[[float], None] | None = None

    async def _call(self, function: Callable[[], _T]) -> _T:
        return await self._thread.call(functools.partial(patiently, function))

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
        self._db = open_database(self.path)
        self._cursor = self._db.cursor()  # for every commit (see store_writes)

    def start(self, listener: HistoryListener) -> None:
        """Start the writer; committed and failed batches go to ``listener``."""
        self._listener = listener
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
        if self._inline is None:
            loop = asyncio.get_running_loop()
            if not getattr(loop, "_ready", True) and time.monotonic() >= self._burst_until:
                # Nothing else is due (the loop's queue of callbacks is empty)
                # and nothing was just committed: a lone message. Commit now, not
                # a turn later (a tenth of its latency). ``_ready`` is asyncio's
                # own; another loop always waits a turn.
                self._commit_now()
                self._burst_until = time.monotonic() + BURST_GAP
                return
            # At the end of this loop turn: what else arrives in it goes along.
            self._inline = loop.call_soon(self._commit_now)

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

    def _commit_now(self) -> None:
        """Commit what is pending here on the loop, or leave it to the writer task."""
        self._inline = None
        listener = self._listener
        if not self._pending:
            return
        if (
            listener is None
            or self._db is None
            or self._writing
            or self._thread.busy
            or self._changes
            or self._closing
            or time.monotonic() < self._thread_until
        ):
            self._wakeup.set()
            return
        batch, self._pending = self._pending, []
        started = time.monotonic()
        try:
            self._write(batch)
        except (sqlite3.Error, OSError) as exc:
            if isinstance(exc, sqlite3.Error) and busy(exc):
                # Another process holds the write lock: wait for it on the
                # thread, not here. The batch goes first, in order.
                self._pending[:0] = batch
                self._wakeup.set()
                return
            error: BaseException | None = exc
        else:
            error = None
        took = time.monotonic() - started
        if took > INLINE_BUDGET:
            logger.info(
                "a commit took %.0f ms: committing on the database thread for %.0f s",
                took * 1000,
                THREAD_AFTER_SLOW,
            )
            self._thread_until = started + took + THREAD_AFTER_SLOW
        self._report(listener, batch, error)
        if self._wal_bytes >= CHECKPOINT_BYTES:
            self._wakeup.set()  # the writer task checkpoints, on the thread

    def _report(
        self, listener: HistoryListener, batch: list[Entry], error: BaseException | None
    ) -> None:
        """Tell the listener how a batch went; log a failure once, with a count when it ends."""
        if error is not None:
            if self._failed_messages == 0:
                logger.error("cannot store messages: %s (%s)", error, self.path)
            self._failed_messages += len(batch)
            self.failures += 1
            listener.failed(batch)
            return
        if self._failed_messages:
            logger.warning("storing messages again; %d could not be stored", self._failed_messages)
            self._failed_messages = 0
        listener.committed(batch)

    async def _write_loop(self, listener: HistoryListener) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            self._writing = True
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
                    self._report(listener, batch, exc)
                else:
                    self._report(listener, batch, None)
            if self._wal_bytes >= CHECKPOINT_BYTES:
                # SQLite's automatic checkpoint is off: it would run inside a
                # COMMIT, which may be on the event loop, and it fsyncs.
                try:
                    await self._call(self._checkpoint)
                except (sqlite3.Error, OSError) as exc:
                    logger.warning("history checkpoint failed: %s (%s)", exc, self.path)
                self._wal_bytes = 0
            self._writing = False
            if self._closing and not self._pending and not self._changes:
                return

    def _checkpoint(self) -> None:
        assert self._db is not None
        self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()

    def _write(self, batch: list[Entry]) -> None:
        assert self._cursor is not None
        started = time.perf_counter()
        write_batch(self._cursor, batch)
        self._wal_bytes += COMMIT_OVERHEAD + sum(len(e.message.text) + ROW_OVERHEAD for e in batch)
        if self.commit_observer is not None:
            self.commit_observer(time.perf_counter() - started)

    async def trim(self, room: str, cut: Cut) -> int:
        """Apply a retention cut to the table; returns how many rows went."""

        def delete() -> int:
            assert self._db is not None
            return delete_cut(self._db, room, cut)

        return await self._call(delete)

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
            self._db = self._cursor = None
        self._thread.stop()
