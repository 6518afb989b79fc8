"""Where and when the store writes: the journal on the event loop, SQLite on its thread.

A message is reported once its batch is in the journal (one ``write()``, on
the loop); the database thread applies the journal in group commits, in one
queue with reads and moderation changes. These tests pin down that nothing on
the loop waits for SQLite, that order holds across that queue, and that a
failed apply keeps its messages and tries them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import pichat.store
import pichat.store_file
from pichat.history import Deletion, Entry
from pichat.journal import journal_path, read_entries
from pichat.protocol import Message
from pichat.retention import Cut
from pichat.store import Store
from tests.test_store import KEEP_ALL, entry, opened, query


def watch_threads(store: Store) -> list[str]:
    """The name of the thread each commit of ``store`` ran on, in order."""
    threads: list[str] = []
    store.commit_observer = lambda _: threads.append(threading.current_thread().name)
    return threads


@contextlib.contextmanager
def locked(path: Path) -> Iterator[sqlite3.Connection]:
    """Another connection holding the database's write lock (an administrator's sqlite3)."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")
        try:
            yield other
        finally:
            if other.in_transaction:
                other.execute("COMMIT")


async def test_a_reported_message_is_in_the_journal_and_committed_on_the_thread(
    tmp_path: Path,
) -> None:
    """Reported means journaled (a kill -9 keeps it); SQLite gets it on the store's thread."""
    path = tmp_path / "h.sqlite3"
    async with opened(path) as (store, recorder):
        threads = watch_threads(store)
        store.append(entry(1))
        await recorder.wait_committed(1)
        assert [e.message.id for e in read_entries(journal_path(path))[0]] == [1]
        umask = os.umask(0)
        os.umask(umask)
        # Readable by whoever may read the database (SQLite's 0644, less the umask).
        assert stat.S_IMODE(journal_path(path).stat().st_mode) == 0o644 & ~umask
        assert stat.S_IMODE(path.stat().st_mode) == 0o644 & ~umask
        assert [m.id for m in await store.messages_after("lobby", 0, 10)] == [1]
        assert threads == ["pichat-store"]
        # Another connection sees it: committed, not just queued.
        assert query(path, "SELECT id FROM messages") == [(1,)]


async def test_a_locked_database_does_not_hold_up_messages(tmp_path: Path) -> None:
    """Another process's write lock: messages are still reported at once, and stored after.

    Before the journal, a message waited for the lock (on the thread) before
    anyone saw it: an administrator's open ``sqlite3`` froze the room.
    """
    path = tmp_path / "h.sqlite3"
    async with opened(path) as (store, recorder):
        store.append(entry(1))
        await recorder.wait_committed(1)
        await store.messages_after("lobby", 0, 1)  # in the database before the lock
        with locked(path):
            store.append(entry(2))
            store.append(entry(3))
            await recorder.wait_committed(3)
            await asyncio.sleep(0.1)  # the loop runs: nothing waits in it
            assert query(path, "SELECT id FROM messages") == [(1,)]
        assert [m.id for m in await store.messages_after("lobby", 0, 10)] == [1, 2, 3]
        assert recorder.failed_batches == []
        assert store.healthy


async def test_a_read_sees_every_message_reported_before_it(tmp_path: Path) -> None:
    """A read queued behind an apply that waits for a lock waits too, and sees the rows."""
    path = tmp_path / "h.sqlite3"
    async with opened(path) as (store, recorder):
        with locked(path):
            for number in (1, 2, 3):
                store.append(entry(number))
            await recorder.wait_committed(3)
            reading = asyncio.ensure_future(store.messages_after("lobby", 0, 10))
            await asyncio.sleep(0.1)
            assert not reading.done()
        assert [m.id for m in await reading] == [1, 2, 3]


async def test_a_deletion_is_applied_after_the_message_it_names(tmp_path: Path) -> None:
    """Deleting a message the thread has yet to store: the row goes all the same."""
    path = tmp_path / "h.sqlite3"
    async with opened(path) as (store, recorder):
        with locked(path):
            store.append(entry(1))
            await recorder.wait_committed(1)
            store.delete(Deletion("lobby", (1,)))
            store.append(entry(2))
            await recorder.wait_committed(2)
    assert query(path, "SELECT id FROM messages") == [(2,)]


async def test_a_failed_apply_keeps_the_messages_and_tries_them_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The lock outlasts the wait: unhealthy, nothing lost, stored with the next batch."""
    monkeypatch.setattr(pichat.store_file, "BUSY_TIMEOUT", 0.1)
    path = tmp_path / "h.sqlite3"
    async with opened(path) as (store, recorder):
        with caplog.at_level(logging.WARNING, logger="pichat.store"), locked(path):
            store.append(entry(1))
            await recorder.wait_committed(1)
            for _ in range(100):
                if not store.healthy:
                    break
                await asyncio.sleep(0.02)
            assert not store.healthy
            assert store.failures == 1
        assert "cannot store messages in" in caplog.text
        # The next read tries again first: no need to wait for another message.
        assert [m.id for m in await store.messages_after("lobby", 0, 10)] == [1]
        assert store.healthy
        store.append(entry(2))
        await recorder.wait_committed(2)
        assert [m.id for m in await store.messages_after("lobby", 0, 10)] == [1, 2]
        assert store.healthy
        assert "storing messages in" in caplog.text
    assert recorder.failed_batches == []


async def test_a_deletion_while_the_database_refuses_is_not_undone_by_the_retry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A message deleted before its row could be written stays out when the write succeeds."""
    monkeypatch.setattr(pichat.store_file, "BUSY_TIMEOUT", 0.1)
    path = tmp_path / "h.sqlite3"
    async with opened(path) as (store, recorder):
        with locked(path):
            store.append(entry(1))
            store.append(entry(2))
            await recorder.wait_committed(2)
            await store.messages_after("lobby", 0, 10)  # the apply has failed
            assert not store.healthy
            store.delete(Deletion("lobby", (1,)))
            await store.messages_after("lobby", 0, 10)  # the deletion went while refused
        assert [m.id for m in await store.messages_after("lobby", 0, 10)] == [2]
        assert store.healthy


async def test_close_keeps_the_journal_when_the_database_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Messages the database would not take at close are in the journal at the next start."""
    monkeypatch.setattr(pichat.store_file, "BUSY_TIMEOUT", 0.1)
    path = tmp_path / "h.sqlite3"
    with contextlib.ExitStack() as stack:
        async with opened(path) as (store, recorder):
            store.append(entry(1))
            await recorder.wait_committed(1)
            await store.messages_after("lobby", 0, 1)
            stack.enter_context(locked(path))
            store.append(entry(2))
            await recorder.wait_committed(2)
        assert query(path, "SELECT id FROM messages") == [(1,)]
        assert [e.message.id for e in read_entries(journal_path(path))[0]] == [1, 2]
    async with opened(path) as (store, _):
        assert [m.id for m in (await store.load("lobby", 10)).messages] == [1, 2]
    assert not journal_path(path).exists()  # applied, then removed at the clean close


async def test_the_journal_is_emptied_once_applied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past JOURNAL_BYTES, and all of it in the database, the journal starts again."""
    monkeypatch.setattr(pichat.store, "JOURNAL_BYTES", 1024)
    path = tmp_path / "h.sqlite3"
    sizes: list[int] = []
    async with opened(path) as (store, recorder):
        for number in range(1, 51):
            store.append(Entry("lobby", Message(number, 1000, "a", "", "x" * 100), None, KEEP_ALL))
            await recorder.wait_committed(number)
            await store.messages_after("lobby", number, 1)  # the thread has caught up
            sizes.append(journal_path(path).stat().st_size)
        assert len(await store.messages_after("lobby", 0, 100)) == 50
    assert max(sizes) < 1024 + 300, sizes
    assert sizes[-1] < sizes[-2] or sizes[-2] < sizes[-3]  # it was emptied, repeatedly
    assert not journal_path(path).exists()


async def test_the_wal_is_checkpointed_on_the_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's own checkpoint (it would run in a loop commit) is off: ours bounds the WAL."""
    monkeypatch.setattr(pichat.store, "CHECKPOINT_BYTES", 64 * 1024)
    path = tmp_path / "h.sqlite3"
    checkpoints: list[str] = []
    checkpoint = Store._checkpoint

    def counted(store: Store) -> None:
        checkpoints.append(threading.current_thread().name)
        checkpoint(store)

    monkeypatch.setattr(Store, "_checkpoint", counted)
    async with opened(path) as (store, recorder):
        for number in range(1, 301):
            store.append(Entry("lobby", Message(number, 1000, "a", "", "x" * 2000), None, KEEP_ALL))
            await recorder.wait_committed(number)
            await store.messages_after("lobby", number, 1)  # one commit each, as at 50 msg/s
        wal = path.with_name(path.name + "-wal").stat().st_size
    # 300 commits of a 2000-character message: about 3.6 MiB of WAL frames
    # without checkpoints; with one every 64 KiB the WAL is reused from its start.
    assert wal < 512 * 1024, wal
    assert checkpoints and set(checkpoints) == {"pichat-store"}


async def test_the_thread_waits_for_a_lock_and_then_writes(tmp_path: Path) -> None:
    """A write on the thread retries while another connection holds the lock."""
    path = tmp_path / "h.sqlite3"
    async with opened(path) as (store, recorder):
        store.append(entry(1))
        await recorder.wait_committed(1)
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        asyncio.get_running_loop().call_later(0.3, other.execute, "COMMIT")
        await store.trim("lobby", Cut(first_id=2, oldest_ms=-(2**63)))
        other.close()
    assert query(path, "SELECT id FROM messages") == []


async def test_a_lone_message_commits_within_the_callback_that_appended_it(
    tmp_path: Path,
) -> None:
    """Nothing else due on the loop: the journal write is not put off to the next turn.

    A message alone in its turn (the common case below saturation) was
    committed one loop turn later, a tenth of its time in the server with
    cold caches; with other callbacks due, it still waits for them so that
    what they append goes in the same commit.
    """
    async with opened(tmp_path / "h.sqlite3") as (store, recorder):
        loop = asyncio.get_running_loop()
        seen: list[int] = []
        done = loop.create_future()

        def alone() -> None:  # a timer callback: the loop has nothing else ready
            store.append(entry(1))
            seen.append(len(recorder.committed_batches))
            loop.call_soon(crowded)

        def crowded() -> None:
            loop.call_soon(lambda: None)  # something else is due: wait for it
            store.append(entry(2))
            seen.append(len(recorder.committed_batches))
            done.set_result(None)

        loop.call_later(0.01, alone)
        await done
        await recorder.wait_committed(2)
        assert seen == [1, 1]
        ids = [[e.message.id for e in batch] for batch in recorder.committed_batches]
        assert ids == [[1], [2]]


async def test_messages_read_in_one_callback_share_a_commit_after_the_first(
    tmp_path: Path,
) -> None:
    """Several frames in one read, on an idle loop: one commit at once, one for the rest.

    Only the first is alone in its turn. Committed one by one, each message
    was its own commit and its own write to every member: under saturation a
    room of 1000 went from 2.5 million deliveries a second to 0.3 million
    (the load generator then read one frame a write and sent its next
    messages one by one, so the server never got a batch again).
    """
    async with opened(tmp_path / "h.sqlite3") as (store, recorder):
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def read() -> None:  # a data_received with four frames, nothing else due
            for id_ in (1, 2, 3, 4):
                store.append(entry(id_))
            done.set_result(None)

        loop.call_later(0.01, read)
        await done
        await recorder.wait_committed(4)
        ids = [[e.message.id for e in batch] for batch in recorder.committed_batches]
        assert ids == [[1], [2, 3, 4]]
