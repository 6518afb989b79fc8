"""The one thread every database call of a :class:`~.store.Store` runs on.

A ``ThreadPoolExecutor(1)`` did the same, but each call paid for its
generality: ``submit`` with its locks and thread accounting, a concurrent future
wrapped into an asyncio one, and a task step to pass the result on. With 10
people in a room that hand-off was a sixth of the server's time per message
while messages waited for their COMMIT on it. Here a call is one
``SimpleQueue.put``, and the answer one ``call_soon_threadsafe`` that settles
the awaiting future directly; a job nobody awaits (applying the journal) is the
``put`` alone.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["DatabaseThread"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

_Job = tuple[Callable[[], Any], asyncio.AbstractEventLoop | None, "asyncio.Future[Any] | None"]


def _settle(future: asyncio.Future[Any], error: BaseException | None, result: Any) -> None:
    if future.cancelled():
        return  # the caller went away (shutdown): nobody to tell
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class DatabaseThread:
    """Runs calls one at a time, in order, on a thread of its own, started on first use."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def _start(self) -> None:
        if self._thread is None:
            # A daemon thread: a store never closed (a test, a crash) cannot
            # keep the process alive.
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    async def call(self, function: Callable[[], _T]) -> _T:
        """``function()`` on the thread; its result or its exception, here."""
        self._start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_T] = loop.create_future()
        self._jobs.put((function, loop, future))
        return await future

    def submit(self, function: Callable[[], None]) -> None:
        """``function()`` on the thread, in order with the calls; nobody waits for it.

        For work whose outcome the caller does not await (applying the
        journal): ``function`` handles its own errors, and one it lets through
        is logged by the thread rather than lost.
        """
        self._start()
        self._jobs.put((function, None, None))

    def stop(self) -> None:
        """Finish the calls queued, then end the thread (a later call starts another)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._jobs.put(None)
            thread.join()

    def _run(self) -> None:
        jobs = self._jobs
        while True:
            job = jobs.get()
            if job is None:
                return
            function, loop, future = job
            error: BaseException | None = None
            result = None
            try:
                result = function()
            except BaseException as exc:  # handed to the caller, as the executor did
                error = exc
            if loop is None or future is None:  # submitted: nobody to hand it to
                if error is not None:
                    logger.error("a database job failed", exc_info=error)
                continue
            try:
                loop.call_soon_threadsafe(_settle, future, error, result)
            except RuntimeError:  # the loop is closed: nobody waits any more
                pass
