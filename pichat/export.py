"""``pichat export``: every stored message, in id order, as JSON lines, text or HTML.

It reads the history through a read-only connection, so it works beside a
running daemon (WAL lets it read while the daemon commits) or on a stopped
one's state directory, and never changes the database. Messages the daemon's
journal holds beyond the database (shown a few milliseconds ago, or since a
crash pichat has not restarted from) are exported too, in their place.
"""

from __future__ import annotations

import heapq
import html
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from .backup import EX_DATAERR, BackupError, check_database, journal_entries, open_readonly
from .history import Entry
from .journal import missing
from .protocol import Message
from .state_dir import HISTORY_FILE

__all__ = ["FORMATS", "export"]

FORMATS = ("jsonl", "txt", "html")

_STYLE = (
    "body{font:16px/1.4 system-ui,sans-serif;max-width:48rem;margin:auto;padding:1rem}"
    "h2{margin-top:2rem}ol{list-style:none;padding:0}li{margin:.4rem 0}"
    "time{color:#666;font-size:.85em}b{margin:0 .4rem}p{margin:0;white-space:pre-wrap}"
)


def _messages(db: sqlite3.Connection, room: str | None) -> Iterator[tuple[str, Message]]:
    query = "SELECT room, id, ms, name, avatar, text FROM messages"
    parameters: tuple[str, ...] = ()
    if room is not None:
        query += " WHERE room = ?"
        parameters = (room,)
    for row in db.execute(query + " ORDER BY room, id", parameters):
        yield row[0], Message(*row[1:])


def _journaled(
    db: sqlite3.Connection, journal: list[Entry], room: str | None
) -> list[tuple[str, Message]]:
    """The journal's messages the database lacks, in export order."""
    extra = [(e.room, e.message) for e in missing(db, journal) if room in (None, e.room)]
    return sorted(extra, key=_order)


def _order(item: tuple[str, Message]) -> tuple[str, int]:
    # SQLite's ORDER BY room compares UTF-8 bytes: the same order as code points.
    return item[0], item[1].id


def export(state_dir: Path, output: TextIO, room: str | None = None, form: str = "jsonl") -> int:
    """Write the messages of ``state_dir`` (of one ``room``) to ``output``; returns how many.

    Raises:
        BackupError: the history is missing, unreadable or not a pichat database.
    """
    path = state_dir / HISTORY_FILE
    db = open_readonly(path)
    try:
        check_database(db, path)
        journal = journal_entries(path)  # first: see backup._write
        try:
            db.execute("BEGIN")  # the rooms' last ids and the rows of one moment
            messages = heapq.merge(_messages(db, room), _journaled(db, journal, room), key=_order)
            return _write(messages, output, form)
        except sqlite3.DatabaseError as exc:
            raise BackupError(EX_DATAERR, f"{path}: {exc}") from None
    finally:
        db.close()


def _write(messages: Iterator[tuple[str, Message]], output: TextIO, form: str) -> int:
    count = 0
    current: str | None = None
    if form == "html":
        output.write(
            '<!doctype html>\n<html lang="en">\n<meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>pichat history</title>\n<style>{_STYLE}</style>\n<h1>pichat history</h1>\n"
        )
    for room, message in messages:
        count += 1
        if form == "jsonl":
            output.write(json.dumps({**message.as_v1(), "room": room}, ensure_ascii=False) + "\n")
        elif form == "txt":
            if room != current:
                output.write(f"{'' if current is None else chr(10)}# {room}\n")
            output.write(f"[{message.date}] {message.name}: {message.text}\n")
        else:
            if room != current:
                if current is not None:
                    output.write("</ol>\n")
                output.write(f"<h2>{html.escape(room)}</h2>\n<ol>\n")
            output.write(
                f'<li id="{html.escape(room)}-{message.id}"><time>{message.date}</time>'
                f"<b>{html.escape(message.name)}</b><p>{html.escape(message.text)}</p></li>\n"
            )
        current = room
    if form == "html":
        output.write("</ol>\n" if current is not None else "<p>No messages.</p>\n")
        output.write("</html>\n")
    return count
