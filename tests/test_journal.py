"""The message journal: records, torn tails, replay, and a real ``kill -9``.

A message is reported (and broadcast) once it is in the journal, before
SQLite has it; these tests kill a process at that point and check that the
next start has every message, and only those: a torn last record is
ignored, a message deleted after it was applied stays deleted.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pichat.backup import EX_NOINPUT, BackupError, backup, restore
from pichat.export import export
from pichat.history import Entry
from pichat.journal import encode, journal_path, read_entries, replay
from pichat.protocol import Message
from pichat.retention import Cut
from pichat.state_dir import HISTORY_FILE
from pichat.store_file import open_database
from tests.test_store import entry, open_error, opened, query
from tests.test_store_commits import locked

ROOT = Path(__file__).resolve().parent.parent


def ids(entries: list[Entry]) -> list[int]:
    return [e.message.id for e in entries]


def fields(e: Entry) -> tuple[object, ...]:
    m = e.message
    return (e.room, m.id, m.ms, m.name, m.avatar, m.text, m.moderator, m.announcement, e.cut)


def test_a_record_reads_back_as_it_was_written(tmp_path: Path) -> None:
    """Every field a message is stored with survives the journal, non-ASCII text included."""
    path = tmp_path / "h.journal"
    first = Entry("lobby", Message(7, 1234, "zoë", "cat", 'héllo ✓\n"x"'), "s", Cut(3, 99))
    second = Entry(
        "other",
        Message(8, 1235, "mod", "", "hi", moderator=True, announcement=True),
        "t",
        Cut(1, 0),
    )
    path.write_bytes(encode([first]) + encode([second]))
    entries, ignored = read_entries(path)
    assert ignored == 0
    assert [fields(e) for e in entries] == [fields(first), fields(second)]
    assert entries[1].message.moderator and entries[1].message.announcement


def test_a_torn_last_record_is_ignored_whatever_its_length(tmp_path: Path) -> None:
    """A crash mid-write leaves any prefix of the last record: the ones before it stand."""
    path = tmp_path / "h.journal"
    whole = encode([entry(1)]) + encode([entry(2), entry(3)])
    last = encode([entry(4)])
    for cut in range(len(last)):
        path.write_bytes(whole + last[:cut])
        entries, ignored = read_entries(path)
        assert (ids(entries), ignored) == ([1, 2, 3], cut)


def test_a_damaged_record_ends_the_journal(tmp_path: Path) -> None:
    """A flipped byte fails the checksum: it and what follows are not read."""
    path = tmp_path / "h.journal"
    records = [encode([entry(n)]) for n in (1, 2, 3)]
    damaged = bytearray(records[1])
    damaged[-2] ^= 0x20
    path.write_bytes(records[0] + bytes(damaged) + records[2])
    entries, ignored = read_entries(path)
    assert ids(entries) == [1]
    assert ignored == len(records[1]) + len(records[2])


def test_a_missing_journal_is_empty(tmp_path: Path) -> None:
    assert read_entries(tmp_path / "none.journal") == ([], 0)


def test_replay_adds_only_what_the_database_lacks(tmp_path: Path) -> None:
    """Rows at or below a room's last id were applied (and maybe deleted since): skipped."""
    db = open_database(tmp_path / "h.sqlite3")
    try:
        db.execute("INSERT INTO rooms (room, last_id, epoch) VALUES ('lobby', 2, 'e')")
        db.execute(
            "INSERT INTO messages (room, id, ms, name, avatar, text) "
            "VALUES ('lobby', 2, 1, 'a', '', 'm2')"
        )  # 1 was deleted by a moderator after it was applied
        path = tmp_path / "h.journal"
        path.write_bytes(encode([entry(1), entry(2)]) + encode([entry(3), entry(1, room="new")]))
        assert replay(db, read_entries(path)[0]) == 2
        rows = db.execute("SELECT room, id FROM messages ORDER BY room, id").fetchall()
        assert rows == [("lobby", 2), ("lobby", 3), ("new", 1)]
        last = db.execute("SELECT room, last_id, epoch FROM rooms ORDER BY room").fetchall()
        assert last == [("lobby", 3, "e"), ("new", 1, "")]
    finally:
        db.close()


@contextlib.contextmanager
def child(mode: str, path: Path) -> Iterator[str]:
    """A process writing to the store at ``path``; yields its line, then kill -9."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.journal_child", mode, str(path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        yield line
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


async def killed_with_journal_only(state: Path) -> Path:
    """A state directory whose daemon was killed with messages 1-3 in the journal alone."""
    state.mkdir()
    path = state / HISTORY_FILE
    async with opened(path):
        pass  # the database exists, so that the test can lock it
    with locked(path), child("reported", path) as line:  # the child's apply waits
        assert line == "reported"
    assert query(path, "SELECT id FROM messages") == []
    return path


async def test_messages_reported_before_a_kill_are_there_at_the_next_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """kill -9 while SQLite lacks what was broadcast: the next open replays the journal."""
    path = await killed_with_journal_only(tmp_path / "state")
    assert ids(read_entries(journal_path(path))[0]) == [1, 2, 3]
    with caplog.at_level(logging.WARNING, logger="pichat.store"):
        async with opened(path) as (store, _):
            loaded = await store.load("lobby", 10)
            assert [m.id for m in loaded.messages] == [1, 2, 3]
            assert loaded.last_id == 3
            assert journal_path(path).stat().st_size == 0  # applied: emptied
    assert "recovered 3 messages from" in caplog.text


async def test_a_message_deleted_before_a_kill_stays_deleted(tmp_path: Path) -> None:
    """The journal still holds a message a moderator deleted: the replay leaves it out."""
    path = tmp_path / "h.sqlite3"
    with child("deleted", path) as line:
        assert line == "deleted"
    assert ids(read_entries(journal_path(path))[0]) == [1, 2]
    async with opened(path) as (store, _):
        assert [m.id for m in (await store.load("lobby", 10)).messages] == [2]


async def test_a_torn_journal_is_applied_up_to_the_tear(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The last write cut short by the crash: the whole records go in, the rest is named."""
    path = tmp_path / "h.sqlite3"
    async with opened(path):
        pass
    journal_path(path).write_bytes(encode([entry(1)]) + encode([entry(2)])[:-3])
    with caplog.at_level(logging.WARNING, logger="pichat.store"):
        async with opened(path) as (store, recorder):
            assert [m.id for m in (await store.load("lobby", 10)).messages] == [1]
            store.append(entry(2))  # the engine gives out the id again: it was never shown
            await recorder.wait_committed(1)
    assert "ignored" in caplog.text and "a torn last write" in caplog.text
    assert query(path, "SELECT id, text FROM messages") == [(1, "m1"), (2, "m2")]


def test_a_journal_write_cut_short_fails_that_batch_alone(tmp_path: Path) -> None:
    """A file size limit (a full disk, as far as the journal knows) cuts a record short.

    The batch is reported failed (nobody sees it), the file is cut back to
    its last whole record, and the next batch is journaled, readable and
    stored. Without the cut back, the torn record would have ended the
    journal there and hidden every later one from a replay.
    """
    path = tmp_path / "h.sqlite3"
    with child("fsize", path) as line:
        results = json.loads(line)
    assert results == {
        "reported": [1, 3],
        "failed": [2],
        "stored": [1, 3],
        "journal": [1, 3],
        "healthy": [False, True],  # unhealthy from the failure to the next good write
    }


async def test_a_backup_holds_what_only_the_journal_has(tmp_path: Path) -> None:
    """``pichat backup`` after a crash (or while the thread is behind) misses nothing shown."""
    await killed_with_journal_only(tmp_path / "state")
    target = tmp_path / "copy.sqlite3"
    backup(tmp_path / "state", target)
    assert query(target, "SELECT id FROM messages") == [(1,), (2,), (3,)]


async def test_a_restore_continues_above_the_journal_ids(tmp_path: Path) -> None:
    """Ids only the replaced journal gave out are not given out again; the journal is kept aside."""
    state = tmp_path / "state"
    path = await killed_with_journal_only(state)
    empty = tmp_path / "empty.sqlite3"
    async with opened(empty):
        pass
    restore(state, empty)
    assert not journal_path(path).exists()
    (aside,) = state.glob("history.journal.replaced-*")
    assert ids(read_entries(aside)[0]) == [1, 2, 3]
    async with opened(path) as (store, _):
        loaded = await store.load("lobby", 10)
        assert (loaded.messages, loaded.last_id) == ([], 3)


async def test_an_export_holds_what_only_the_journal_has_in_its_place(tmp_path: Path) -> None:
    """``pichat export`` merges the journal's messages after their room's stored ones."""
    path = await killed_with_journal_only(tmp_path / "state")
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("INSERT INTO rooms (room, last_id, epoch) VALUES ('a', 1, 'e')")
        db.execute(
            "INSERT INTO messages (room, id, ms, name, avatar, text) "
            "VALUES ('a', 1, 1, 'b', '', 'x')"
        )
    out = io.StringIO()
    assert export(tmp_path / "state", out) == 4
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(line["room"], line["id"]) for line in lines] == [
        ("a", 1),
        ("lobby", 1),
        ("lobby", 2),
        ("lobby", 3),
    ]
    out = io.StringIO()
    assert export(tmp_path / "state", out, room="a") == 1


async def test_a_journal_that_cannot_be_read_is_a_store_error(tmp_path: Path) -> None:
    """The daemon refuses to start (exit 73) rather than run without what the journal holds."""
    path = tmp_path / "h.sqlite3"
    journal_path(path).mkdir()  # not a file: neither readable nor writable as one
    message = await open_error(path)
    assert "h.journal: cannot apply the message journal" in message


async def test_an_unreadable_journal_is_one_line_for_backup_and_export(tmp_path: Path) -> None:
    """Not a traceback: ``pichat backup`` and ``export`` name the file and exit 66."""
    state = tmp_path / "state"
    state.mkdir()
    async with opened(state / HISTORY_FILE):
        pass
    journal_path(state / HISTORY_FILE).mkdir()
    for run in (
        lambda: backup(state, tmp_path / "copy.sqlite3"),
        lambda: export(state, io.StringIO()),
    ):
        with pytest.raises(BackupError) as info:
            run()
        assert info.value.code == EX_NOINPUT
        assert str(info.value) == f"cannot read {state / 'history.journal'}: Is a directory"
    assert not (tmp_path / "copy.sqlite3").exists()
