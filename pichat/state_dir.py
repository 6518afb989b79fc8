"""The state directory: its history file, its lock, and the error when it cannot be used.

Shared by the daemon (:mod:`.app`, :mod:`.store`) and the offline commands
(:mod:`.backup`, :mod:`.export`), which must agree on names and on the lock.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

__all__ = ["HISTORY_FILE", "LOCK_FILE", "StateLock", "StoreError"]

#: The history database in the state directory.
HISTORY_FILE = "history.sqlite3"
#: Locked (flock) by whoever uses the state directory: the daemon, a restore.
LOCK_FILE = "pichat.lock"


class StoreError(Exception):
    """The history database cannot be used (unreadable, damaged, or from a newer pichat)."""


class StateLock:
    """An exclusive ``flock`` on the state directory's lock file.

    The daemon holds it from start to exit, and ``pichat restore`` while it
    replaces the database, so neither runs under the other. The kernel drops it
    when the process dies, so a ``kill -9`` leaves no stale lock behind. The file
    is opened read-only: a lock file root created still locks for the daemon's
    user.

    Args:
        directory: the state directory (created if missing).
    """

    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock now or fail.

        Raises:
            StoreError: another process holds it, or the file cannot be opened.
        """
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StoreError(f"{self.path}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreError(
                f"{self.path.parent} is in use by another pichat (a running daemon or restore)"
            ) from None
        self._fd = fd

    def release(self) -> None:
        """Let go of the lock (closing the file releases it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
