"""The daemon's one periodic task: the keepalive sweep and hourly retention.

One task for both, so that 100 idle clients cost the Pi one wake-up per ping
interval, not one per client (the outbox sweeps every connection in one pass),
and retention needs no timer of its own. The interval is read at every turn,
so a reload that changes ``ping_interval`` takes effect from the next one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

__all__ = ["EXPIRE_PERIOD", "Housekeeping"]

logger = logging.getLogger(__name__)

#: Seconds between two retention passes.
EXPIRE_PERIOD = 3600.0


class Housekeeping:
    """Sweeps every ping interval (when keepalive is on) and expires every hour.

    Args:
        ping_interval: the current keepalive interval in seconds, 0 when off.
        sweep: pings the idle and closes the silent (:meth:`.outbox.Outbox.sweep`).
        expire: applies retention to every room.
        expire_period: seconds between two retention passes.
    """

    def __init__(
        self,
        ping_interval: Callable[[], float],
        sweep: Callable[[], object],
        expire: Callable[[], Awaitable[None]],
        expire_period: float = EXPIRE_PERIOD,
    ) -> None:
        self._ping_interval = ping_interval
        self._sweep = sweep
        self._expire = expire
        self._expire_period = expire_period
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the task on the running loop."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="pichat-housekeeping")

    async def stop(self) -> None:
        """Cancel the task and wait for it (at shutdown)."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        since_expire = 0.0
        while True:
            interval = self._ping_interval() or self._expire_period
            await asyncio.sleep(interval)
            if self._ping_interval():
                self._sweep()
            since_expire += interval
            if since_expire >= self._expire_period:
                since_expire = 0.0
                try:
                    await self._expire()
                except Exception as exc:  # a failing disk must not end keepalive
                    logger.error("retention failed: %s", exc)
