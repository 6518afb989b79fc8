"""The SQLite history store: migrations, epochs, group commit, ids, retention, errors."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Hashable
from pathlib import Path

import pytest

from pichat.bans import Ban
from pichat.history import Deletion, Entry, Loaded
from pichat.protocol import Message
from pichat.retention import Cut, Retention
from pichat.schema import SCHEMA_VERSION
from pichat.state_dir import StoreError
from pichat.store import Store

#: Keeps everything: no count or age limit in reach of a test.
KEEP_ALL = Cut(first_id=1, oldest_ms=-(2**63))
DAY_MS = 86_400_000
TIMEOUT = 10.0

#: The schema pichat wrote before epochs (schema version 1), as it was released.
SCHEMA_1 = """
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
PRAGMA user_version = 1;
"""


class Recorder:
    """The store's listener: collects what it reports and lets a test wait for it."""

    def __init__(self) -> None:
        self.committed_batches: list[list[Entry]] = []
        self.failed_batches: list[list[Entry]] = []
        self.event = asyncio.Event()

    def committed(self, batch: list[Entry]) -> None:
        self.committed_batches.append(batch)
        self.event.set()

    def failed(self, batch: list[Entry]) -> None:
        self.failed_batches.append(batch)
        self.event.set()

    def count(self, batches: list[list[Entry]]) -> int:
        return sum(len(batch) for batch in batches)

    async def wait_committed(self, count: int) -> None:
        while self.count(self.committed_batches) < count:
            self.event.clear()
            await asyncio.wait_for(self.event.wait(), TIMEOUT)

    async def wait_failed(self, count: int) -> None:
        while self.count(self.failed_batches) < count:
            self.event.clear()
            await asyncio.wait_for(self.event.wait(), TIMEOUT)


def message(number: int, ms: int = 1_700_000_000_000) -> Message:
    return Message(number, ms, "alice", "", f"m{number}")


def entry(
    number: int,
    sender: Hashable = None,
    *,
    room: str = "lobby",
    ms: int = 1_700_000_000_000,
    cut: Cut = KEEP_ALL,
) -> Entry:
    return Entry(room, message(number, ms), sender, cut)


@contextlib.asynccontextmanager
async def opened(path: Path) -> AsyncIterator[tuple[Store, Recorder]]:
    """An open, started store and its recorder; closed (drained) on exit."""
    recorder = Recorder()
    store = Store(path)
    await store.open()
    try:
        store.start(recorder)
        yield store, recorder
    finally:
        await store.close()


def query(path: Path, sql: str) -> list[tuple[object, ...]]:
    """Rows of a query on the closed database file."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        return db.execute(sql).fetchall()


async def open_error(path: Path) -> str:
    """The StoreError message opening ``path`` gives."""
    store = Store(path)
    try:
        with pytest.raises(StoreError) as info:
            await store.open()
    finally:
        await store.close()
    return str(info.value)


# Opening and migrating.


async def test_new_database_is_migrated_to_the_current_schema(tmp_path: Path) -> None:
    """A new file (and its directory) gets WAL mode and user_version = SCHEMA_VERSION."""
    path = tmp_path / "state" / "h.sqlite3"
    async with opened(path):
        pass
    assert query(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert query(path, "PRAGMA journal_mode") == [("wal",)]


async def test_database_from_a_newer_pichat_is_refused(tmp_path: Path) -> None:
    """A schema newer than this code raises StoreError instead of guessing."""
    path = tmp_path / "h.sqlite3"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    assert "newer" in await open_error(path)
    assert query(path, "PRAGMA user_version") == [(SCHEMA_VERSION + 1,)]  # left untouched


async def test_schema_1_database_is_migrated_and_its_rooms_get_an_epoch(tmp_path: Path) -> None:
    """A database from before epochs keeps its messages and ids; each room gets an epoch."""
    path = tmp_path / "h.sqlite3"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executescript(SCHEMA_1)
        db.executemany(
            "INSERT INTO messages VALUES ('lobby', ?, ?, 'alice', '', ?)",
            [(i, 1000 * i, f"m{i}") for i in (4, 5)],
        )
        db.execute("INSERT INTO rooms VALUES ('lobby', 7)")
        db.commit()
    async with opened(path) as (store, _):
        loaded = await store.load("lobby", 10)
    assert query(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert [m.text for m in loaded.messages] == ["m4", "m5"]
    assert loaded.last_id == 7
    assert loaded.epoch
    async with opened(path) as (store, _):
        assert (await store.load("lobby", 10)).epoch == loaded.epoch


async def test_unwritable_state_dir_is_a_store_error(tmp_path: Path) -> None:
    """A state directory that cannot be created raises StoreError naming the file."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert "h.sqlite3" in await open_error(blocker / "h.sqlite3")


async def test_damaged_database_is_a_store_error(tmp_path: Path) -> None:
    """A database whose messages b-tree is destroyed (header intact) is refused at open.

    The error gives SQLite's integrity check and tells the operator what to do.
    """
    path = tmp_path / "h.sqlite3"
    async with opened(path) as (store, recorder):
        await store.load("lobby", 10)
        for number in range(1, 201):
            store.append(entry(number))
        await recorder.wait_committed(200)
    [(root,)] = query(path, "SELECT rootpage FROM sqlite_master WHERE name = 'messages'")
    [(page_size,)] = query(path, "PRAGMA page_size")
    assert isinstance(root, int) and isinstance(page_size, int) and root > 1
    assert not (tmp_path / "h.sqlite3-wal").exists()  # everything is in the main file
    with path.open("r+b") as file:
        file.seek((root - 1) * page_size)
        file.write(bytes(page_size))
    error = await open_error(path)
    assert "damaged" in error
    assert "integrity check" in error
    assert "restore a backup" in error


async def test_file_that_is_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    """A history file overwritten with something else is refused as damaged."""
    path = tmp_path / "h.sqlite3"
    path.write_bytes(b"this is not an SQLite database, just text" * 100)
    error = await open_error(path)
    assert "damaged" in error and "restore a backup" in error


async def test_unopenable_file_is_not_called_damaged(tmp_path: Path) -> None:
    """A history path SQLite cannot open (here a directory) is not reported as damaged."""
    path = tmp_path / "h.sqlite3"
    path.mkdir()
    error = await open_error(path)
    assert "h.sqlite3" in error
    assert "damaged" not in error and "restore a backup" not in error


# Epochs.


async def test_new_room_gets_an_epoch_that_survives_reopen(tmp_path: Path) -> None:
    """The first load of a room names its epoch; later loads and reopens keep it."""
    path = tmp_path / "h.sqlite3"
    async with opened(path) as (store, _):
        first = await store.load("lobby", 10)
        assert first == Loaded([], 0, first.epoch)
        assert first.epoch and len(first.epoch) <= 64
        assert (await store.load("lobby", 10)).epoch == first.epoch
        other = await store.load("other", 10)
        assert other.epoch and other.epoch != first.epoch
    async with opened(path) as (store, _):
        assert (await store.load("lobby", 10)).epoch == first.epoch


async def test_fresh_database_gets_a_different_epoch(tmp_path: Path) -> None:
    """A replaced (new) database gives the same room another epoch, so cursors do not carry."""
    async with opened(tmp_path / "a.sqlite3") as (store, _):
        first = (await store.load("lobby", 10)).epoch
    async with opened(tmp_path / "b.sqlite3") as (store, _):
        second = (await store.load("lobby", 10)).epoch
    assert first != second


async def test_room_written_before_its_first_load_gets_an_epoch(tmp_path: Path) -> None:
    """A room whose messages were written before any load still gets an epoch, then keeps it."""
    path = tmp_path / "h.sqlite3"
    async with opened(path) as (store, recorder):
        store.append(entry(1))
        await recorder.wait_committed(1)
        loaded = await store.load("lobby", 10)
        assert loaded.epoch and loaded.last_id == 1
        store.append(entry(2))
        await recorder.wait_committed(2)
        assert (await store.load("lobby", 10)).epoch == loaded.epoch


# Writing and reading.


async def test_appended_messages_are_reported_in_order_and_load_back(tmp_path: Path) -> None:
    """Queued messages are committed in order, reported after commit, and load back."""
    path = tmp_path / "h.sqlite3"
    async with opened(path) as (store, recorder):
        for number in range(1, 51):
            store.append(entry(number, sender=number))
        await recorder.wait_committed(50)
        reported = [e.message.id for batch in recorder.committed_batches for e in batch]
        assert reported == list(range(1, 51))
        senders = [e.sender for batch in recorder.committed_batches for e in batch]
        assert senders == list(range(1, 51))
        assert len(recorder.committed_batches) < 50  # group commit: several per transaction
    async with opened(path) as (store, _):
        loaded = await store.load("lobby", 10)
        assert [m.id for m in loaded.messages] == list(range(41, 51))
        assert loaded.last_id == 50
        last = loaded.messages[-1]
        assert (last.text, last.date, last.name) == ("m50", message(50).date, "alice")
        other = await store.load("other", 10)
        assert (other.messages, other.last_id) == ([], 0)


async def test_rooms_are_kept_apart(tmp_path: Path) -> None:
    """Messages of two rooms with the same ids live side by side."""
    async with opened(tmp_path / "h.sqlite3") as (store, recorder):
        store.append(entry(1, room="a"))
        store.append(entry(1, room="b"))
        store.append(entry(2, room="b"))
        await recorder.wait_committed(3)
        assert (await store.load("a", 10)).last_id == 1
        assert [m.id for m in (await store.load("b", 10)).messages] == [1, 2]


async def test_messages_after(tmp_path: Path) -> None:
    """messages_after gives up to limit stored messages after an id, oldest first, one room."""
    async with opened(tmp_path / "h.sqlite3") as (store, recorder):
        for number in (1, 2, 3, 5, 6):
            store.append(entry(number))
        store.append(entry(4, room="other"))
        await recorder.wait_committed(6)
        assert [m.id for m in await store.messages_after("lobby", 0, 100)] == [1, 2, 3, 5, 6]
        assert [m.id for m in await store.messages_after("lobby", 2, 2)] == [3, 5]
        assert [m.id for m in await store.messages_after("lobby", 3, 100)] == [5, 6]
        assert [m.id for m in await store.messages_after("lobby", 4, 100)] == [5, 6]
        assert await store.messages_after("lobby", 6, 100) == []
        assert await store.messages_after("nowhere", 0, 100) == []
        assert (await store.messages_after("lobby", 5, 1))[0].text == "m6"


async def test_count_retention_deletes_old_rows_but_keeps_last_id(tmp_path: Path) -> None:
    """Each entry's cut is applied in its write: the newest rows stay, the last id survives."""
    path = tmp_path / "h.sqlite3"
    retention = Retention(max_messages=3)
    async with opened(path) as (store, recorder):
        for number in range(1, 11):
            store.append(entry(number, cut=retention.cut(number, 0)))
        await recorder.wait_committed(10)
        loaded = await store.load("lobby", 100)
        assert [m.id for m in loaded.messages] == [8, 9, 10]
        assert loaded.last_id == 10


async def test_trim_by_age_can_empty_a_room_without_reusing_ids(tmp_path: Path) -> None:
    """trim() deletes what a cut drops and says how many; last_id still says where ids are."""
    path = tmp_path / "h.sqlite3"
    retention = Retention(max_messages=100, max_age_days=1)
    async with opened(path) as (store, recorder):
        store.append(entry(1, ms=0))
        store.append(entry(2, ms=DAY_MS))
        await recorder.wait_committed(2)
        assert await store.trim("lobby", retention.cut(2, DAY_MS + DAY_MS // 2)) == 1
        assert await store.trim("lobby", retention.cut(2, DAY_MS + DAY_MS // 2)) == 0
        assert await store.trim("lobby", retention.cut(2, 10 * DAY_MS)) == 1
        loaded = await store.load("lobby", 10)
        assert (loaded.messages, loaded.last_id) == ([], 2)
    async with opened(path) as (store, _):
        assert (await store.load("lobby", 10)).last_id == 2


async def test_trim_by_count_leaves_other_rooms(tmp_path: Path) -> None:
    """trim() of one room never touches another room's rows."""
    async with opened(tmp_path / "h.sqlite3") as (store, recorder):
        for number in range(1, 6):
            store.append(entry(number))
            store.append(entry(number, room="other"))
        await recorder.wait_committed(10)
        assert await store.trim("lobby", Retention(max_messages=2).cut(5, 0)) == 3
        assert [m.id for m in (await store.load("lobby", 10)).messages] == [4, 5]
        assert len((await store.load("other", 10)).messages) == 5


async def test_an_id_stored_twice_keeps_the_first_and_later_writes_go_on(tmp_path: Path) -> None:
    """A duplicate id (it cannot come from the engine) is ignored, not a write failing forever.

    Applied behind the broadcast, a batch the database refused would be
    retried with every later batch, and none of them would ever be stored.
    """
    async with opened(tmp_path / "h.sqlite3") as (store, recorder):
        store.append(entry(1, "first"))
        await recorder.wait_committed(1)
        store.append(entry(1, "again"))
        store.append(entry(2, "later"))
        await recorder.wait_committed(3)
        stored = await store.messages_after("lobby", 0, 10)
        assert [m.id for m in stored] == [1, 2]
        assert store.healthy and store.failures == 0


async def test_close_writes_what_is_queued(tmp_path: Path) -> None:
    """close() commits and reports everything appended before it."""
    path = tmp_path / "h.sqlite3"
    async with opened(path) as (store, recorder):
        for number in range(1, 6):
            store.append(entry(number))
    assert recorder.count(recorder.committed_batches) == 5
    async with opened(path) as (store, _):
        assert (await store.load("lobby", 10)).last_id == 5


# Moderation: deletions, the moderator badge, bans.


async def test_deletions_and_clear_reach_the_database(tmp_path: Path) -> None:
    """delete() removes the listed ids, ``through`` every id up to it; last_id stays."""
    path = tmp_path / "h.sqlite3"
    async with opened(path) as (store, recorder):
        await store.load("lobby", 10)
        for number in range(1, 6):
            store.append(entry(number))
        await recorder.wait_committed(5)
        store.delete(Deletion("lobby", (2, 4)))
    async with opened(path) as (store, _):
        loaded = await store.load("lobby", 10)
        assert [m.id for m in loaded.messages] == [1, 3, 5]
        store.delete(Deletion("lobby", through=5))
    async with opened(path) as (store, _):
        loaded = await store.load("lobby", 10)
    assert loaded.messages == [] and loaded.last_id == 5


async def test_moderator_badge_is_stored(tmp_path: Path) -> None:
    """A moderator's message loads back with moderator=True."""
    path = tmp_path / "h.sqlite3"
    async with opened(path) as (store, recorder):
        store.append(Entry("lobby", Message(1, 1000, "alice", "", "hi", True), None, KEEP_ALL))
        store.append(entry(2))
        await recorder.wait_committed(2)
    async with opened(path) as (store, _):
        loaded = await store.load("lobby", 10)
        after = await store.messages_after("lobby", 0, 10)
    assert [m.moderator for m in loaded.messages] == [True, False]
    assert [m.moderator for m in after] == [True, False]


async def test_bans_are_saved_and_replaced(tmp_path: Path) -> None:
    """save_bans() replaces the stored bans; they load back after a reopen."""
    path = tmp_path / "h.sqlite3"
    first = Ban("192.0.2.1", "bob", 0, "spam", "lobby", "alice", 5, "Bob")
    second = Ban("", "carol", 99, "", "lobby", "alice", 6, "carol")
    async with opened(path) as (store, _):
        assert await store.load_bans() == []
        store.save_bans([first, second])
    async with opened(path) as (store, _):
        assert await store.load_bans() == [first, second]
        store.save_bans([second])
    async with opened(path) as (store, _):
        assert await store.load_bans() == [second]
