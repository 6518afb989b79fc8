"""The store's database thread: calls run in order on one thread, errors come back."""

from __future__ import annotations

import threading

import pytest

from pichat.dbthread import DatabaseThread


async def test_calls_run_in_order_on_one_named_thread_and_errors_come_back() -> None:
    """Every call runs on the same thread, results and exceptions reach the caller."""
    worker = DatabaseThread("pichat-test-db")
    names = [await worker.call(lambda: threading.current_thread().name) for _ in range(3)]
    assert names == ["pichat-test-db"] * 3
    assert threading.current_thread().name not in names

    def fail() -> None:
        raise ValueError("disk full")

    with pytest.raises(ValueError, match="disk full"):
        await worker.call(fail)
    assert await worker.call(lambda: 42) == 42  # an error does not end the thread
    worker.stop()
    assert not any(t.name == "pichat-test-db" for t in threading.enumerate())
    assert await worker.call(lambda: "again") == "again"  # a later call starts another
    worker.stop()


async def test_submitted_jobs_run_in_order_with_calls_and_their_errors_are_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``submit`` queues like ``call`` without a caller to tell: a failure is a log line."""
    worker = DatabaseThread("pichat-test-db")
    done: list[str] = []

    def fail() -> None:
        done.append("fail")
        raise ValueError("no such table")

    worker.submit(lambda: done.append("first"))
    worker.submit(fail)
    assert await worker.call(lambda: done.append("call") or len(done)) == 3
    assert done == ["first", "fail", "call"]
    assert "a database job failed" in caplog.text and "no such table" in caplog.text
    worker.stop()
