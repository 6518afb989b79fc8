"""Persistent history in SQLite: the :class:`~.history.History` of one Pi.

A message is broadcast only once it is stored, so a ``kill -9`` loses nothing
anyone has seen. Stored first means journaled: the batch of a loop turn is one
``write()`` to :mod:`.journal` on the event loop (about 40 µs), and the
listener hears right after it. The database thread then applies the journal to
SQLite in group commits, in one queue with every read and moderation change:
a read sees every message reported before it was asked, and a deletion, which
only names reported messages, always comes after the rows it deletes. At
start, what the journal holds beyond the database is applied before anything
is read (:func:`~.journal.replay`); once the thread has caught up, the journal
is emptied before the next write when it has grown past :data:`JOURNAL_BYTES`,
and removed at a clean close.

Before the journal, the batch was committed to SQLite on the loop (175-210 µs
cold, the commit's five statements), with hand-offs to the thread when it was
busy or the disk slow. Now nothing on the loop waits for SQLite at all: a
locked database (an administrator's ``sqlite3``) or a slow SD card holds up
only the thread (:func:`~.store_file.patiently`), and a failed apply keeps its
messages in the journal and retries them with the next batch (the history is
reported unhealthy meanwhile). WAL with ``synchronous=NORMAL`` keeps a commit
durable against a process crash without an fsync; the checkpoint, the one step
that fsyncs, runs on the thread as well. Opening and the pragmas are
:mod:`.store_file`, the statements of a commit :mod:`.store_writes`.
"""

from __future__ import annotations

import asyncio
import collections
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
from .journal import Journal, journal_path, read_entries, replay
from .moderation_tables import ModerationTables
from .protocol import Message
from .retention import Cut
from .state_dir import StoreError
from .store_file import open_database, patiently
from .store_writes import delete_cut, delete_messages, deleted, write_batch

__all__ = ["Store", "new_epoch"]

logger = logging.getLogger(__name__)


_T = TypeVar("_T")

#: Appended this soon (seconds) after a batch journaled at once, a message is
#: part of a burst (frames of one read, a busy room) and waits for the turn's end.
BURST_GAP = 0.001
#: Once the journal is this long and all of it is in the database, it is emptied.
JOURNAL_BYTES = 256 * 1024
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
        self._journal = Journal(journal_path(path))
        self._pending: list[Entry] = []
        self._listener: HistoryListener | None = None
        self._inline: asyncio.Handle | None = None
        self._burst_until = 0.0  # monotonic: appends wait for the turn's end until then
        # Journaled batches, numbered by record, the thread has yet to apply:
        # appended on the loop, taken on the thread (deque's ends are atomic).
        self._to_apply: collections.deque[tuple[int, list[Entry]]] = collections.deque()
        self._apply_queued = False  # a job on the thread's queue will take them
        self._unapplied: list[tuple[int, list[Entry]]] = []  # the thread's: retried first
        self._records = 0  # journal records written (by the loop)
        self._applied = 0  # ... and in the database (set by the thread)
        self._wal_bytes = 0  # written since the last checkpoint, roughly
        # Failures are logged once, with a count when they end (a full disk
        # would otherwise log a traceback per message).
        self._failed_messages = 0  # not journaled, so not shown
        self._apply_failing = False  # journaled and shown, not yet in the database
        self._journal_failures = 0
        self._apply_failures = 0
        #: Called with each commit's duration in seconds, from the thread that committed.
        self.commit_observer: Callable[[float], None] | None = None

    async def _call(self, function: Callable[[], _T]) -> _T:
        self._ensure_apply()  # what was reported goes first
        return await self._thread.call(functools.partial(patiently, function))

    @property
    def healthy(self) -> bool:
        """False from a failed write until the next successful one."""
        return self._failed_messages == 0 and not self._apply_failing

    @property
    def failures(self) -> int:
        """Writes that failed since start, to the journal or the database (for monitoring)."""
        return self._journal_failures + self._apply_failures

    # Opening and migrating.

    async def open(self) -> None:
        """Open (creating if needed) and migrate the database, then apply the journal.

        Raises:
            StoreError: when the file cannot be opened, is damaged or is from a
                newer version, or the journal cannot be applied.
        """
        await self._call(self._open)

    def _open(self) -> None:
        self._db = open_database(self.path)
        self._cursor = self._db.cursor()  # for every commit (see store_writes)
        journal = self._journal.path
        try:
            entries, ignored = read_entries(journal)
            if ignored:
                logger.warning(
                    "ignored %d bytes at the end of %s (a torn last write)", ignored, journal
                )
            recovered = replay(self._db, entries)
            self._journal.open()
            self._journal.truncate()
        except (sqlite3.Error, OSError) as exc:
            self._journal.close(remove=False)
            self._db.close()
            self._db = self._cursor = None
            raise StoreError(f"{journal}: cannot apply the message journal: {exc}") from exc
        if recovered:
            logger.warning("recovered %d messages from %s", recovered, journal)

    def start(self, listener: HistoryListener) -> None:
        """Start writing; journaled and failed batches go to ``listener``."""
        self._listener = listener
        if self._pending:
            self._commit_now()

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
        """Queue a message; the listener hears once it is journaled."""
        self._pending.append(entry)
        if self._inline is None:
            loop = asyncio.get_running_loop()
            if not getattr(loop, "_ready", True) and time.monotonic() >= self._burst_until:
                # Nothing else is due (the loop's queue of callbacks is empty)
                # and nothing was just written: a lone message. Journal it now,
                # not a turn later (a tenth of its latency). ``_ready`` is
                # asyncio's own; another loop always waits a turn.
                self._commit_now()
                self._burst_until = time.monotonic() + BURST_GAP
                return
            # At the end of this loop turn: what else arrives in it goes along.
            self._inline = loop.call_soon(self._commit_now)

    def delete(self, deletion: Deletion) -> None:
        """Queue the removal of messages (after every message already reported)."""
        self._queue(functools.partial(delete_messages, deletion=deletion))
        self._thread.submit(functools.partial(self._forget, deletion))

    def _forget(self, deletion: Deletion) -> None:
        """Drop deleted messages from a failed apply's retry (on the thread).

        Otherwise the retry would store, after the deletion, a message the
        deletion had found no row for.
        """
        self._unapplied = [
            (record, [e for e in batch if not deleted(e, deletion)])
            for record, batch in self._unapplied
        ]

    def _queue(self, change: Callable[[sqlite3.Connection], None]) -> None:
        self._ensure_apply()
        self._thread.submit(functools.partial(self._change, change))

    def _change(self, change: Callable[[sqlite3.Connection], None]) -> None:
        """Apply a moderation change (on the thread)."""
        try:
            patiently(functools.partial(self._apply, change))
        except (sqlite3.Error, OSError) as exc:
            # Memory already changed; the database catches up on the next
            # deletion or ban, or the moderator repeats it after a restart.
            logger.error("cannot store a moderation change: %s (%s)", exc, self.path)

    def _apply(self, change: Callable[[sqlite3.Connection], None]) -> None:
        assert self._db is not None
        db = self._db
        db.execute("BEGIN")
        try:
            change(db)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _commit_now(self) -> None:
        """Journal what is pending and report it; the thread applies it later."""
        self._inline = None
        listener = self._listener
        if not self._pending or listener is None:
            return
        batch, self._pending = self._pending, []
        journal = self._journal
        if journal.size >= JOURNAL_BYTES and self._applied == self._records:
            try:
                journal.truncate()  # all of it is in the database
            except OSError as exc:
                logger.warning("cannot empty %s: %s", journal.path, exc)
        try:
            journal.write(batch)
        except OSError as exc:
            self._journal_failures += 1
            self._report(listener, batch, exc)
            return
        self._records += 1
        self._to_apply.append((self._records, batch))
        self._report(listener, batch, None)
        self._ensure_apply()

    def _ensure_apply(self) -> None:
        """That a job on the thread's queue will apply what is journaled (on the loop).

        After a failed apply, the next read or change tries again first, so
        the database catches up without waiting for the next message.
        """
        if (self._to_apply or self._apply_failing) and not self._apply_queued:
            self._apply_queued = True
            self._thread.submit(self._apply_journal)

    def _report(
        self, listener: HistoryListener, batch: list[Entry], error: BaseException | None
    ) -> None:
        """Tell the listener how a batch went; log a failure once, with a count when it ends."""
        if error is not None:
            if self._failed_messages == 0:
                logger.error("cannot store messages: %s (%s)", error, self._journal.path)
            self._failed_messages += len(batch)
            listener.failed(batch)
            return
        if self._failed_messages:
            logger.warning("storing messages again; %d could not be stored", self._failed_messages)
            self._failed_messages = 0
        listener.committed(batch)

    def _apply_journal(self) -> None:
        """Commit to SQLite every journaled batch not in it yet, in one transaction (on the thread).

        A failure keeps the batches, in order, for the next try: the next
        batch's job, the close, or the replay at the next start.
        """
        self._apply_queued = False  # first: a batch appended from now on gets a job
        todo = self._unapplied
        while self._to_apply:
            todo.append(self._to_apply.popleft())
        if not todo:
            return
        entries = todo[0][1] if len(todo) == 1 else [e for _, batch in todo for e in batch]
        try:
            patiently(functools.partial(self._write, entries))
        except (sqlite3.Error, OSError) as exc:
            self._apply_failures += 1
            if not self._apply_failing:
                logger.error(
                    "cannot store messages in %s: %s (they are kept in %s and tried again)",
                    self.path,
                    exc,
                    self._journal.path,
                )
            self._apply_failing = True
            return
        self._unapplied = []
        self._applied = todo[-1][0]
        if self._apply_failing:
            logger.warning("storing messages in %s again", self.path)
            self._apply_failing = False
        if self._wal_bytes >= CHECKPOINT_BYTES:
            # SQLite's automatic checkpoint is off: it would run inside a
            # COMMIT, and it fsyncs; here it holds up only this thread.
            try:
                self._checkpoint()
            except (sqlite3.Error, OSError) as exc:
                logger.warning("history checkpoint failed: %s (%s)", exc, self.path)
            self._wal_bytes = 0

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
        """Journal and apply what is queued, close the database; the journal goes if applied."""
        if self._inline is not None:
            self._inline.cancel()
        self._commit_now()
        if self._db is not None:
            db = self._db
            await self._call(self._apply_journal)
            drained = not self._unapplied and self._applied == self._records
            await self._call(db.close)
            self._db = self._cursor = None
            self._journal.close(remove=drained)
        self._thread.stop()
