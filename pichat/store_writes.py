"""The statements of a commit of messages: the rows, each room's last id, retention.

Apart from :mod:`.store`, which decides where and when a commit runs, so that
what a commit writes is read in one place. Each function takes the cursor it
runs on: the store keeps one for every commit rather than a new one per
statement (what ``Connection.execute`` makes), and a lone row is inserted with
``execute``: together 5-8 µs of a cold commit's 175-183 (one message every
20 ms, the two versions interleaved in one process).
"""

from __future__ import annotations

import sqlite3

from .history import Deletion, Entry
from .retention import Cut

__all__ = ["delete_cut", "delete_messages", "deleted", "row", "write_batch"]

#: OR IGNORE: an id stored twice (the journal replayed over rows a crash left
#: uncounted, say) keeps the first; an apply that failed on it would fail forever.
INSERT_MESSAGE = (
    "INSERT OR IGNORE INTO messages (room, id, ms, name, avatar, text, moderator, announcement) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
UPDATE_LAST_ID = (
    "INSERT INTO rooms (room, last_id, epoch) VALUES (?, ?, '') "
    "ON CONFLICT (room) DO UPDATE SET last_id = max(last_id, excluded.last_id)"
)


def row(e: Entry) -> tuple[str, int, int, str, str, str, int, int]:
    """The columns of a message's row, in :data:`INSERT_MESSAGE`'s order (the journal's too)."""
    m = e.message
    return (e.room, m.id, m.ms, m.name, m.avatar, m.text, int(m.moderator), int(m.announcement))


def write_batch(cursor: sqlite3.Cursor, batch: list[Entry]) -> None:
    """Insert the batch and apply each room's newest cut, in one transaction."""
    rows = [row(e) for e in batch]
    newest: dict[str, Entry] = {}
    for entry in batch:
        newest[entry.room] = entry
    cursor.execute("BEGIN")
    try:
        if len(rows) == 1:  # the usual batch: executemany costs more for one row
            cursor.execute(INSERT_MESSAGE, rows[0])
        else:
            cursor.executemany(INSERT_MESSAGE, rows)
        for room, entry in newest.items():
            cursor.execute(UPDATE_LAST_ID, (room, entry.message.id))
            delete_cut(cursor, room, entry.cut)
        cursor.execute("COMMIT")
    except BaseException:
        if cursor.connection.in_transaction:
            cursor.execute("ROLLBACK")
        raise


def delete_cut(db: sqlite3.Cursor | sqlite3.Connection, room: str, cut: Cut) -> int:
    """Remove what a retention cut drops from a room; returns how many rows went.

    On the commit's cursor inside :func:`write_batch`, on the connection for
    the retention pass (:meth:`.store.Store.trim`).

    Two statements, not one with OR: ``id < ?`` is a range of the primary key,
    while the OR made SQLite read every row of the room on every commit (a
    quarter of a message's in-server time with 1000 retained). Without an age
    limit the date part matches nothing and is skipped.
    """
    removed = db.execute(
        "DELETE FROM messages WHERE room = ? AND id < ?", (room, cut.first_id)
    ).rowcount
    if cut.oldest_ms > 0:
        removed += db.execute(
            "DELETE FROM messages WHERE room = ? AND ms < ?", (room, cut.oldest_ms)
        ).rowcount
    return removed


def delete_messages(db: sqlite3.Connection, deletion: Deletion) -> None:
    """Remove what a moderator deleted: the listed ids, and every id up to ``through``."""
    db.executemany(
        "DELETE FROM messages WHERE room = ? AND id = ?",
        [(deletion.room, id_) for id_ in deletion.ids],
    )
    if deletion.through:
        db.execute(
            "DELETE FROM messages WHERE room = ? AND id <= ?", (deletion.room, deletion.through)
        )


def deleted(e: Entry, deletion: Deletion) -> bool:
    """Whether ``deletion`` removes the message of ``e``."""
    return e.room == deletion.room and (
        e.message.id in deletion.ids or e.message.id <= deletion.through
    )
