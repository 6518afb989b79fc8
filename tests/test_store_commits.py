"""Where the store commits: on the event loop while its thread is idle, else on the thread.

A commit on the loop saves a message two thread switches and two loop turns;
these tests pin down when that happens, that order and durability hold either
way, and that what the loop must not do (the fsyncing checkpoint, commits on a
slow disk) stays on the thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
from pathlib import Path

import pytest

import pichat.store
from pichat.history import Deletion, Entry
from pichat.protocol import Message
from pichat.retention import Cut
from pichat.store import Store
from tests.test_store import KEEP_ALL, entry, opened, query


def watch_threads(store: Store) -> list[str]:
    """The name of the thread each commit of ``store`` ran on, in order."""
    threads: list[str] = []
    store.commit_observer = lambda _: threads.append(threading.current_thread().name)
    return threads


async def test_an_idle_store_commits_on_the_event_loop_and_the_row_is_on_disk(
    tmp_path: Path,
) -> None:
    """A message commits on the loop's own thread, and is in the file when reported."""
    path = tmp_path / "h.sqlite3"
    async with opened(path) as (store, recorder):
        threads = watch_threads(store)
        store.append(entry(1))
        await recorder.wait_committed(1)
        assert threads == [threading.current_thread().name]
        # Another connection sees it: committed, not just queued.
        assert query(path, "SELECT id FROM messages") == [(1,)]


async def test_messages_wait_for_a_busy_thread_and_keep_their_order(tmp_path: Path) -> None:
    """While the thread runs a call, messages go to it, in order, after that call."""
    loop_thread = threading.current_thread().name
    async with opened(tmp_path / "h.sqlite3") as (store, recorder):
        threads = watch_threads(store)
        store.append(entry(1))
        await recorder.wait_committed(1)
        reading = asyncio.ensure_future(store.load("lobby", 10))
        await asyncio.sleep(0)  # the read is on the thread now
        store.append(entry(2))
        store.append(entry(3))
        await reading
        await recorder.wait_committed(3)
        store.append(entry(4))  # the thread is idle again
        await recorder.wait_committed(4)
        ids = [e.message.id for batch in recorder.committed_batches for e in batch]
        assert ids == [1, 2, 3, 4]
        assert threads == [loop_thread, "pichat-store", loop_thread]


async def test_a_queued_moderation_change_goes_first_on_the_thread(tmp_path: Path) -> None:
    """A deletion queued before a message is applied before it: both on the thread."""
    path = tmp_path / "h.sqlite3"
    async with opened(path) as (store, recorder):
        threads = watch_threads(store)
        store.append(entry(1))
        await recorder.wait_committed(1)
        store.delete(Deletion("lobby", (1,)))
        store.append(entry(2))
        await recorder.wait_committed(2)
        assert threads[1:] == ["pichat-store"]
    assert query(path, "SELECT id FROM messages") == [(2,)]


async def test_a_slow_commit_sends_commits_to_the_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A commit on the loop that took longer than the budget: the next ones go to the thread."""
    monkeypatch.setattr(pichat.store, "INLINE_BUDGET", 0.0)  # every commit is "slow"
    loop_thread = threading.current_thread().name
    async with opened(tmp_path / "h.sqlite3") as (store, recorder):
        threads = watch_threads(store)
        with caplog.at_level(logging.INFO, logger="pichat.store"):
            store.append(entry(1))
            await recorder.wait_committed(1)
            store.append(entry(2))
            await recorder.wait_committed(2)
        assert threads == [loop_thread, "pichat-store"]
        assert "committing on the database thread for 60 s" in caplog.text


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
        wal = path.with_name(path.name + "-wal").stat().st_size
    # 300 commits of a 2000-character message: about 3.6 MiB of WAL frames
    # without checkpoints; with one every 64 KiB the WAL is reused from its start.
    assert wal < 512 * 1024, wal
    assert checkpoints and set(checkpoints) == {"pichat-store"}


async def test_a_locked_database_does_not_stall_the_loop(tmp_path: Path) -> None:
    """Another process's write lock: the loop goes on, the message waits for it on the thread."""
    path = tmp_path / "h.sqlite3"
    async with opened(path) as (store, recorder):
        threads = watch_threads(store)
        store.append(entry(1))
        await recorder.wait_committed(1)
        with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")  # an administrator's sqlite3 session, say
            store.append(entry(2))
            await asyncio.sleep(0.2)  # the loop runs: the commit did not wait in it
            assert recorder.count(recorder.committed_batches) == 1
            other.execute("COMMIT")
        await recorder.wait_committed(2)
        assert recorder.failed_batches == []
        assert threads[1:] == ["pichat-store"]
    assert query(path, "SELECT id FROM messages") == [(1,), (2,)]


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
    """Nothing else due on the loop: the commit is not put off to the next turn.

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
