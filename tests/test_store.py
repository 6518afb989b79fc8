"""The SQLite history store: migrations, group commit, ids, retention, errors."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from pichat.protocol import Message
from pichat.retention import Retention
from pichat.store import SCHEMA_VERSION, Item, Store, StoreError


class Recorder:
    """Collects what the store reports, and lets a test wait for it."""

    def __init__(self) -> None:
        self.stored: list[list[Item]] = []
        self.failed: list[list[Item]] = []
        self.event = asyncio.Event()

    def on_stored(self, batch: list[Item]) -> None:
        self.stored.append(batch)
        self.event.set()

    def on_failed(self, batch: list[Item]) -> None:
        self.failed.append(batch)
        self.event.set()

    async def wait_stored(self, count: int) -> None:
        while sum(len(batch) for batch in self.stored) < count:
            self.event.clear()
            await asyncio.wait_for(self.event.wait(), 10)


def message(number: int, ms: int = 1_700_000_000_000) -> Message:
    return Message(number, ms, "alice", "", f"m{number}")


async def open_store(path: Path) -> tuple[Store, Recorder]:
    recorder = Recorder()
    store = Store(path, recorder.on_stored, recorder.on_failed)
    await store.open()
    return store, recorder


async def test_new_database_is_migrated_to_the_current_schema(tmp_path: Path) -> None:
    """A new file gets WAL mode and user_version = SCHEMA_VERSION."""
    store, _ = await open_store(tmp_path / "state" / "h.sqlite3")
    await store.close()
    db = sqlite3.connect(tmp_path / "state" / "h.sqlite3")
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


async def test_database_from_a_newer_pichat_is_refused(tmp_path: Path) -> None:
    """A schema newer than this code raises StoreError instead of guessing."""
    path = tmp_path / "h.sqlite3"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    store = Store(path, lambda b: None, lambda b: None)
    with pytest.raises(StoreError, match="newer"):
        await store.open()


async def test_appended_messages_are_reported_in_order_and_load_back(tmp_path: Path) -> None:
    """Queued messages are committed in order, reported after commit, and load back."""
    path = tmp_path / "h.sqlite3"
    store, recorder = await open_store(path)
    for number in range(1, 51):
        store.append("lobby", message(number), number)
    await recorder.wait_stored(50)
    reported = [item[1].id for batch in recorder.stored for item in batch]
    assert reported == list(range(1, 51))
    assert len(recorder.stored) < 50  # group commit: several messages per transaction
    await store.close()
    store, _ = await open_store(path)
    history, last_id = await store.load("lobby", 10)
    assert [m.id for m in history] == list(range(41, 51))
    assert last_id == 50
    assert history[-1].text == "m50" and history[-1].date == message(50).date
    assert await store.load("other", 10) == ([], 0)
    await store.close()


async def test_count_retention_deletes_old_rows_but_keeps_last_id(tmp_path: Path) -> None:
    """With max_messages the table keeps the newest rows; the room's last id survives."""
    path = tmp_path / "h.sqlite3"
    store, recorder = await open_store(path)
    store.retention["lobby"] = Retention(max_messages=3)
    for number in range(1, 11):
        store.append("lobby", message(number), None)
    await recorder.wait_stored(10)
    history, last_id = await store.load("lobby", 100)
    assert [m.id for m in history] == [8, 9, 10]
    assert last_id == 10
    await store.close()


async def test_age_retention_can_empty_a_room_without_reusing_ids(tmp_path: Path) -> None:
    """expire() drops messages older than max_age_days; last_id still says where ids are."""
    path = tmp_path / "h.sqlite3"
    store, recorder = await open_store(path)
    store.retention["lobby"] = Retention(max_messages=100, max_age_days=1)
    day = 86_400_000
    store.append("lobby", message(1, ms=0), None)
    store.append("lobby", message(2, ms=day), None)
    await recorder.wait_stored(2)
    assert await store.expire("lobby", now_ms=day + day // 2) == 1
    assert await store.expire("lobby", now_ms=10 * day) == 1
    assert await store.load("lobby", 10) == ([], 2)
    await store.close()


async def test_failed_write_is_reported_and_nothing_is_stored(tmp_path: Path) -> None:
    """A batch that cannot be written (duplicate id) goes to on_failed, whole."""
    store, recorder = await open_store(tmp_path / "h.sqlite3")
    store.append("lobby", message(1), "first")
    await recorder.wait_stored(1)
    store.append("lobby", message(1), "again")
    while not recorder.failed:
        recorder.event.clear()
        await asyncio.wait_for(recorder.event.wait(), 10)
    assert [item[2] for item in recorder.failed[0]] == ["again"]
    history, _ = await store.load("lobby", 10)
    assert [m.id for m in history] == [1]
    await store.close()


async def test_close_writes_what_is_queued(tmp_path: Path) -> None:
    """close() commits and reports everything appended before it."""
    path = tmp_path / "h.sqlite3"
    store, recorder = await open_store(path)
    for number in range(1, 6):
        store.append("lobby", message(number), None)
    await store.close()
    assert sum(len(batch) for batch in recorder.stored) == 5
    store, _ = await open_store(path)
    assert (await store.load("lobby", 10))[1] == 5
    await store.close()


async def test_unwritable_state_dir_is_a_store_error(tmp_path: Path) -> None:
    """A state directory that cannot be created raises StoreError naming the file."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    store = Store(blocker / "h.sqlite3", lambda b: None, lambda b: None)
    with pytest.raises(StoreError, match="h.sqlite3"):
        await store.open()
