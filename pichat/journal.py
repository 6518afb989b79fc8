"""The message journal: where a message is made durable before it is broadcast.

A cold SQLite commit (BEGIN, INSERT, the room's last id, the retention
DELETE, COMMIT) cost 175-210 µs on the event loop, most of the 0.2 ms by
which pichat's latency in a room of 10 trailed Node's ``ws``. Appending the
same batch to this file is one ``write()`` of a record, about 40 µs cold: the
same durability as SQLite in WAL mode with ``synchronous=NORMAL`` (the bytes
are in the kernel's page cache, so a ``kill -9`` loses nothing, and a power cut
may lose the last writes of either). The database thread then applies the
journal to SQLite in group commits, behind the event loop.

A record is a header (payload length, CRC-32 of the payload) and the payload,
the batch as compact JSON. Reading stops at the first record that is short or
fails its check: a torn tail (a crash in the middle of a ``write()``) is
ignored, never misread. Replaying inserts only the messages above each room's
last id in the database, which the apply raises in the same transaction as its
rows, so a message applied and then deleted by a moderator is not brought back.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import struct
import zlib
from pathlib import Path

from .history import Entry
from .protocol import Message
from .retention import Cut
from .store_writes import row, write_batch

__all__ = ["Journal", "journal_path", "missing", "read_entries", "replay", "room_ids"]

logger = logging.getLogger(__name__)

_HEADER = struct.Struct("<II")
#: A record longer than this is damage, not a batch (a batch is at most a few
#: thousand messages of a few kilobytes).
MAX_RECORD = 64 * 1024 * 1024


def journal_path(database: Path) -> Path:
    """The journal that goes with a history database: ``history.journal`` beside it."""
    return database.with_suffix(".journal")


def encode(batch: list[Entry]) -> bytes:
    """One record: header and payload, written with a single ``write()``."""
    payload = json.dumps(
        [(*row(e), e.cut.first_id, e.cut.oldest_ms) for e in batch],
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode()
    return _HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def _entry(row: list[object]) -> Entry:
    room, id_, ms, name, avatar, text, moderator, announcement, first_id, oldest_ms = row
    assert isinstance(room, str) and isinstance(id_, int) and isinstance(ms, int)
    assert isinstance(name, str) and isinstance(avatar, str) and isinstance(text, str)
    assert isinstance(first_id, int) and isinstance(oldest_ms, int)
    message = Message(
        id_, ms, name, avatar, text, moderator=bool(moderator), announcement=bool(announcement)
    )
    return Entry(room, message, None, Cut(first_id=first_id, oldest_ms=oldest_ms))


def read_entries(path: Path) -> tuple[list[Entry], int]:
    """Every entry of the journal at ``path``, in order, and how many bytes were ignored.

    A missing file is an empty journal. Reading stops at the first record that
    is torn or damaged; what follows it is counted as ignored.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], 0
    entries: list[Entry] = []
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, crc = _HEADER.unpack_from(data, offset)
        start = offset + _HEADER.size
        payload = data[start : start + length]
        if length > MAX_RECORD or len(payload) < length or zlib.crc32(payload) != crc:
            break
        try:
            rows = json.loads(payload)
            batch = [_entry(row) for row in rows]
        except (ValueError, TypeError, AssertionError):
            break  # a matching checksum over bad content: damage all the same
        entries.extend(batch)
        offset = start + length
    return entries, len(data) - offset


def room_ids(entries: list[Entry]) -> dict[str, int]:
    """The highest id each room has in ``entries``."""
    ids: dict[str, int] = {}
    for e in entries:
        ids[e.room] = max(ids.get(e.room, 0), e.message.id)
    return ids


def missing(db: sqlite3.Connection, entries: list[Entry]) -> list[Entry]:
    """The journal ``entries`` that ``db`` lacks: those above their room's last id.

    The rest were applied (and may have been deleted since).
    """
    last = dict(db.execute("SELECT room, last_id FROM rooms").fetchall())
    return [e for e in entries if e.message.id > last.get(e.room, 0)]


def replay(db: sqlite3.Connection, entries: list[Entry]) -> int:
    """Apply to ``db`` the journal ``entries`` it lacks, in one transaction; returns how many."""
    lacking = missing(db, entries)
    if lacking:
        write_batch(db.cursor(), lacking)
    return len(lacking)


class Journal:
    """The append-only journal file of one store, written on the event loop.

    Args:
        path: the file (created on :meth:`open`).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = -1
        #: Bytes in the file, as this journal wrote them.
        self.size = 0

    def open(self) -> None:
        """Open for appending, creating the file if needed.

        With the mode SQLite gives the database (0644 less the umask): whoever
        may read the history (``pichat backup``, ``export``) may read this too.
        """
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        self._fd = os.open(self.path, flags, 0o644)
        self.size = os.fstat(self._fd).st_size

    def write(self, batch: list[Entry]) -> None:
        """Append one record for ``batch``.

        Raises:
            OSError: the record could not be written whole (a full disk); the
                file is cut back to where it was, so later records stay readable.
        """
        record = encode(batch)
        try:
            written = os.write(self._fd, record)
            if written != len(record):
                raise OSError(f"short write to {self.path} ({written} of {len(record)} bytes)")
        except OSError:
            try:
                os.ftruncate(self._fd, self.size)
            except OSError:
                logger.warning("cannot cut %s back after a failed write", self.path)
            raise
        self.size += written

    def truncate(self) -> None:
        """Empty the file: everything in it is in the database."""
        os.ftruncate(self._fd, 0)
        self.size = 0

    def close(self, remove: bool) -> None:
        """Close the file; ``remove`` it when everything in it is in the database."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if remove:
            self.path.unlink(missing_ok=True)
