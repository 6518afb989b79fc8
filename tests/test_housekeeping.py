"""The periodic task, driven with short intervals on the test's own loop."""

from __future__ import annotations

import asyncio
import logging

import pytest

from pichat.housekeeping import Housekeeping


async def test_a_failing_retention_pass_is_logged_and_keepalive_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A disk fault in retention is one error line; the sweeps and the next passes go on."""
    sweeps = 0
    passes = 0
    swept_after_failure = asyncio.Event()

    def sweep() -> None:
        nonlocal sweeps
        sweeps += 1
        if passes:
            swept_after_failure.set()

    async def expire() -> None:
        nonlocal passes
        passes += 1
        raise OSError("disk I/O error")

    housekeeping = Housekeeping(lambda: 0.01, sweep, expire, expire_period=0.02)
    with caplog.at_level(logging.ERROR, logger="pichat.housekeeping"):
        housekeeping.start()
        await asyncio.wait_for(swept_after_failure.wait(), 5)
        while passes < 2:
            await asyncio.sleep(0.01)
        await housekeeping.stop()
    assert sweeps >= 2
    assert [r.getMessage() for r in caplog.records][:2] == ["retention failed: disk I/O error"] * 2


async def test_without_keepalive_nothing_is_swept_and_retention_still_runs() -> None:
    """``ping_interval`` 0 turns the sweep off, not retention."""
    sweeps: list[None] = []
    expired = asyncio.Event()

    async def expire() -> None:
        expired.set()

    housekeeping = Housekeeping(lambda: 0.0, lambda: sweeps.append(None), expire, 0.01)
    housekeeping.start()
    await asyncio.wait_for(expired.wait(), 5)
    await housekeeping.stop()
    assert sweeps == []


async def test_the_interval_is_read_at_every_turn() -> None:
    """A reload that turns keepalive on takes effect without restarting the task."""
    interval = 0.0
    swept = asyncio.Event()

    async def expire() -> None:
        nonlocal interval
        interval = 0.01  # as a reload would, while the task runs

    housekeeping = Housekeeping(lambda: interval, swept.set, expire, 0.01)
    housekeeping.start()
    await asyncio.wait_for(swept.wait(), 5)
    await housekeeping.stop()


async def test_stop_before_start_and_twice_is_harmless() -> None:
    """Shutdown after a failed start calls stop without a task."""

    async def expire() -> None:
        pass

    housekeeping = Housekeeping(lambda: 0.0, lambda: None, expire)
    await housekeeping.stop()
    housekeeping.start()
    await housekeeping.stop()
    await housekeeping.stop()
