"""Opening the history database, and waiting for another process's lock off the loop.

The pragmas every connection of the store runs with (WAL, ``synchronous=NORMAL``,
SQLite's automatic checkpoint off), the migrations, the check that finds a
damaged file at start, and the retry that lets a commit on the event loop fail
at once when another process holds the write lock while calls on the database
thread wait for it.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from .schema import MIGRATIONS, SCHEMA_VERSION
from .state_dir import StoreError

__all__ = ["BUSY_RETRY", "BUSY_TIMEOUT", "busy", "open_database", "patiently"]

logger = logging.getLogger("pichat.store")

_T = TypeVar("_T")

#: How long a call on the database thread waits for another process's write
#: lock (an administrator's ``sqlite3`` session) before it fails (seconds) ...
BUSY_TIMEOUT = 5.0
#: ... trying again this often. A commit on the event loop never waits: it
#: hands its batch to the thread instead.
BUSY_RETRY = 0.01


def busy(exc: sqlite3.Error) -> bool:
    """Another connection holds the lock (SQLITE_BUSY, any of its extended codes)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF == sqlite3.SQLITE_BUSY


def patiently(function: Callable[[], _T]) -> _T:
    """``function()``, again while the database is locked, up to :data:`BUSY_TIMEOUT`.

    SQLite's own busy timeout is 0 on the store's connection, so that a commit on
    the event loop fails at once rather than stalls every client; the waiting
    happens here, on the database thread. Every call retried is one transaction
    or a read, rolled back on failure, so running it again is safe.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT
    while True:
        try:
            return function()
        except sqlite3.OperationalError as exc:
            if not busy(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(BUSY_RETRY)


def open_database(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) and migrate the database at ``path``.

    Raises:
        StoreError: when the file cannot be opened, is damaged or is from a
            newer version.
    """
    db: sqlite3.Connection | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA busy_timeout = 5000")
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            logger.warning("history database is not in WAL mode (%s)", mode)
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("PRAGMA wal_autocheckpoint = 0")  # see Store._apply_journal
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{path}: schema version {version} is newer than this pichat's "
                f"({SCHEMA_VERSION}); upgrade pichat"
            )
        for number in range(version, SCHEMA_VERSION):
            # executescript() commits first; the BEGIN makes each step atomic.
            db.executescript(
                f"BEGIN; {MIGRATIONS[number]} PRAGMA user_version = {number + 1}; COMMIT;"
            )
            logger.info("history database migrated to schema %d", number + 1)
        # Reading every table once finds a damaged file now, not mid-chat.
        db.execute("SELECT count(*) FROM rooms").fetchone()
        db.execute("SELECT count(*), max(ms) FROM messages").fetchone()
        # From now on nothing waits inside SQLite: see patiently().
        db.execute("PRAGMA busy_timeout = 0")
    except sqlite3.OperationalError as exc:
        # Cannot be opened (a directory, no permission, locked): not damage.
        if db is not None:
            db.close()
        raise StoreError(f"{path}: {exc}") from exc
    except sqlite3.DatabaseError as exc:
        verdict = _verdict(db)
        if db is not None:
            db.close()
        raise StoreError(
            f"{path}: the database is damaged ({exc}; integrity check: {verdict}); "
            "restore a backup, or move the file aside to start an empty history"
        ) from exc
    except (OSError, sqlite3.Error, StoreError) as exc:
        if db is not None:
            db.close()
        if isinstance(exc, StoreError):
            raise
        raise StoreError(f"{path}: {exc}") from exc
    return db


def _verdict(db: sqlite3.Connection | None) -> str:
    if db is None:
        return "not run"
    try:
        rows = db.execute("PRAGMA quick_check(3)").fetchall()
    except sqlite3.Error as exc:
        return f"failed: {exc}"
    return "; ".join(str(row[0]) for row in rows)
