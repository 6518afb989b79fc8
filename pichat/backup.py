"""``pichat backup`` and ``pichat restore``: the history database, copied safely.

A backup is SQLite's online backup API from a read-only connection, so it is
consistent while the daemon runs and commits (WAL readers never block the
writer). It is written to a temporary file beside the target, checked
(``PRAGMA integrity_check``), made a single self-contained file
(``journal_mode=DELETE``), synced, and only then given the target's name: a
full disk or a crash leaves the target as it was.

A restore refuses while the daemon runs (the daemon holds the state
directory's :class:`~.store.StateLock`; the restore takes it too, so the daemon
cannot start halfway through). It checks the file, copies it in the same safe
way, keeps the database it replaces beside it, and keeps every room's epoch,
with each room's last id raised to the highest the replaced database had given
out: a page that saw messages newer than the backup resumes with neither a gap
nor an id used twice.

``pichat backup --keep N DIR`` (what ``pichat-backup.service`` runs nightly)
writes a dated file into ``DIR`` the same way and then removes the oldest
dated backups there beyond ``N`` (:mod:`.rotation` picks them); a backup that
fails removes nothing, so a full disk never costs the copies already made.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

from .history import Entry
from .journal import journal_path, read_entries, replay, room_ids
from .rotation import leftovers, next_name, to_remove
from .schema import SCHEMA_VERSION
from .state_dir import HISTORY_FILE, StateLock, StoreError

__all__ = [
    "EX_CANTCREAT",
    "EX_DATAERR",
    "EX_NOINPUT",
    "EX_TEMPFAIL",
    "BackupError",
    "backup",
    "backup_rotating",
    "check_database",
    "journal_entries",
    "open_readonly",
    "restore",
]

# sysexits(3)
EX_DATAERR = 65  # not a pichat database, from a newer pichat, damaged
EX_NOINPUT = 66  # the file cannot be read
EX_CANTCREAT = 73  # the target cannot be written (exists, full disk, no permission)
EX_TEMPFAIL = 75  # pichat is running: stop it and try again


class BackupError(Exception):
    """One line for the user and the exit code that goes with it."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def open_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection that never creates the file.

    Raises:
        BackupError: the file is missing or unreadable (EX_NOINPUT).
    """
    try:
        with open(path, "rb"):  # a clear reason (no such file, permission) first
            pass
    except OSError as exc:
        raise BackupError(EX_NOINPUT, f"cannot read {path}: {exc.strerror}") from None
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    db = sqlite3.connect(uri, uri=True, isolation_level=None)
    db.execute("PRAGMA busy_timeout = 5000")
    return db


def _check_schema(db: sqlite3.Connection, name: Path | str) -> None:
    """That ``db`` has pichat's tables in a schema this pichat reads (cheap: no page read)."""
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    except sqlite3.DatabaseError as exc:
        raise BackupError(EX_DATAERR, f"{name} is not a pichat database ({exc})") from None
    if version > SCHEMA_VERSION:
        raise BackupError(
            EX_DATAERR,
            f"{name} is from a newer pichat (schema {version}; this one reads up to "
            f"{SCHEMA_VERSION}): upgrade pichat first",
        )
    if version < 1 or not {"messages", "rooms"} <= tables:
        raise BackupError(EX_DATAERR, f"{name} is not a pichat database (no pichat tables)")


def check_database(db: sqlite3.Connection, name: Path | str) -> tuple[int, int]:
    """That ``db`` is a sound pichat history this pichat can read.

    Returns:
        how many rooms and messages it holds.

    Raises:
        BackupError: naming what is wrong (EX_DATAERR).
    """
    _check_schema(db, name)
    try:
        verdict = [row[0] for row in db.execute("PRAGMA integrity_check(3)")]
        rooms = db.execute("SELECT count(*) FROM rooms").fetchone()[0]
        messages = db.execute("SELECT count(*) FROM messages").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise BackupError(EX_DATAERR, f"{name} is damaged ({exc})") from None
    if verdict != ["ok"]:
        raise BackupError(EX_DATAERR, f"{name} is damaged: {'; '.join(verdict)}")
    return rooms, messages


@contextlib.contextmanager
def _staging(target: Path) -> Iterator[Path]:
    """A temporary file beside ``target``, removed unless it was renamed."""
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    try:
        yield partial
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()


def _copy(
    source: sqlite3.Connection, partial: Path, name: Path, journal: list[Entry] | None = None
) -> tuple[int, int]:
    """The online backup of ``source`` (called ``name``) into ``partial``, checked and synced.

    The copy is what is checked, so a source damaged on disk is named as such
    without a second full read of it. The ``journal`` of a live history goes
    into the copy too: what it holds beyond the database was shown already.
    """
    try:
        partial.unlink(missing_ok=True)
        copy = sqlite3.connect(partial, isolation_level=None)
    except (OSError, sqlite3.Error) as exc:
        raise BackupError(EX_CANTCREAT, f"cannot write {partial.parent}: {exc}") from None
    try:
        source.backup(copy)
        if journal:
            replay(copy, journal)
        copy.execute("PRAGMA journal_mode = DELETE")  # one file, no -wal beside it
        counts = check_database(copy, name)
    except sqlite3.Error as exc:
        raise BackupError(EX_CANTCREAT, f"cannot write {partial.parent}: {exc}") from None
    finally:
        copy.close()
    try:
        with open(partial, "rb+") as file:
            os.fsync(file.fileno())
    except OSError as exc:
        raise BackupError(EX_CANTCREAT, f"cannot write {partial}: {exc.strerror}") from None
    return counts


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _open_history(state_dir: Path) -> sqlite3.Connection:
    """The live history, read-only, once it is known to be a pichat database."""
    path = state_dir / HISTORY_FILE
    source = open_readonly(path)
    try:
        _check_schema(source, path)
    except BackupError:
        source.close()
        raise
    return source


def _write(source: sqlite3.Connection, name: Path, target: Path, force: bool) -> tuple[int, int]:
    """Copy ``source`` to ``target`` through a partial file; ``target`` is untouched on failure.

    The journal is read before the database is: a record the daemon applies
    and then empties from the journal meanwhile is in the copy either way.
    """
    journal = journal_entries(name)
    with _staging(target) as partial:
        counts = _copy(source, partial, name, journal)
        try:
            if force:
                os.replace(partial, target)
            else:
                os.link(partial, target)  # fails if the target appeared meanwhile
        except OSError as exc:
            raise BackupError(EX_CANTCREAT, f"cannot write {target}: {exc.strerror}") from None
        _sync_directory(target.parent)
    return counts


def backup(state_dir: Path, target: Path, force: bool = False) -> str:
    """Copy the history of ``state_dir`` to ``target``; returns what was done.

    Raises:
        BackupError: with a line and an exit code; ``target`` is untouched then.
    """
    if target.is_dir():
        raise BackupError(EX_CANTCREAT, f"{target} is a directory: give a file name")
    if target.exists() and not force:
        raise BackupError(EX_CANTCREAT, f"{target} exists: pass --force to overwrite it")
    source = _open_history(state_dir)
    try:
        rooms, messages = _write(source, state_dir / HISTORY_FILE, target, force)
    finally:
        source.close()
    return f"backed up {rooms} rooms, {messages} messages to {target}"


@contextlib.contextmanager
def _locked_directory(directory: Path) -> Iterator[list[str]]:
    """``directory`` (made mode 0700 if missing: the history is private), locked; its entries.

    The lock (``flock`` on the directory itself) keeps a second rotating backup
    out, so partial copies found there are leftovers of one cut off, removed.
    """
    try:
        directory.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except (FileExistsError, NotADirectoryError):
        raise BackupError(EX_CANTCREAT, f"{directory} is not a directory") from None
    except OSError as exc:
        raise BackupError(EX_CANTCREAT, f"cannot write {directory}: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            message = f"another pichat backup --keep into {directory} is running"
            raise BackupError(EX_TEMPFAIL, message) from None
        names = os.listdir(directory)
        for name in leftovers(names):
            with contextlib.suppress(OSError):
                (directory / name).unlink()
        yield names
    finally:
        os.close(fd)


def backup_rotating(
    state_dir: Path, directory: Path, keep: int, now: datetime.datetime | None = None
) -> str:
    """A dated backup in ``directory``, then the oldest dated ones beyond ``keep`` removed.

    Raises:
        BackupError: with a line and an exit code. A failed backup removes
            nothing; a failed removal comes after a good backup, and says so.
    """
    if keep < 1:
        raise BackupError(EX_CANTCREAT, f"--keep {keep}: keep at least one backup")
    source = _open_history(state_dir)  # first: a bad source leaves no trace
    try:
        with _locked_directory(directory) as names:
            when = now or datetime.datetime.now(datetime.UTC)
            target = directory / next_name(when, names)
            rooms, messages = _write(source, state_dir / HISTORY_FILE, target, force=False)
            done = f"backed up {rooms} rooms, {messages} messages to {target}"
            removed = 0
            for old in to_remove([*names, target.name], keep, target.name):
                try:
                    (directory / old).unlink()
                except OSError as exc:
                    message = f"{done}, but cannot remove {directory / old}: {exc.strerror}"
                    raise BackupError(EX_CANTCREAT, message) from None
                removed += 1
    finally:
        source.close()
    return done + (f"; removed {removed} older" if removed else "")


def journal_entries(database: Path) -> list[Entry]:
    """What the journal beside ``database`` holds (nothing if there is none).

    Raises:
        BackupError: the journal exists and cannot be read (EX_NOINPUT).
    """
    journal = journal_path(database)
    try:
        return read_entries(journal)[0]
    except OSError as exc:
        raise BackupError(EX_NOINPUT, f"cannot read {journal}: {exc.strerror}") from None


def _room_ids(path: Path) -> list[tuple[str, int, str]]:
    """Each room's last id and epoch in the history being replaced (none if unreadable).

    The journal's ids count: a crash may have left messages there that the
    database never got, and pages have seen them.
    """
    ids = {room: (last_id, "") for room, last_id in room_ids(journal_entries(path)).items()}
    for room, last_id, epoch in _database_ids(path):
        ids[room] = (max(last_id, ids.get(room, (0, ""))[0]), epoch)
    return [(room, last_id, epoch) for room, (last_id, epoch) in ids.items()]


def _database_ids(path: Path) -> list[tuple[str, int, str]]:
    if not path.exists():
        return []
    try:
        db = open_readonly(path)
    except BackupError:
        return []
    try:
        return [tuple(row) for row in db.execute("SELECT room, last_id, epoch FROM rooms")]
    except sqlite3.Error:
        return []  # damaged: the reason to restore; its ids are lost with it
    finally:
        db.close()


def restore(state_dir: Path, source_path: Path) -> str:
    """Replace the history of ``state_dir`` with the backup ``source_path``.

    Raises:
        BackupError: with a line and an exit code; the history is untouched then.
    """
    lock = StateLock(state_dir)
    try:
        lock.acquire()
    except StoreError as exc:
        raise BackupError(EX_TEMPFAIL, f"{exc}: stop pichat first") from None
    try:
        return _restore(state_dir, source_path)
    finally:
        lock.release()


def _restore(state_dir: Path, source_path: Path) -> str:
    source = open_readonly(source_path)
    try:
        check_database(source, source_path)
        target = state_dir / HISTORY_FILE
        with _staging(target) as partial:
            rooms, messages = _copy(source, partial, source_path)
            _continue_ids(partial, _room_ids(target))
            kept = _set_aside(target)
            os.replace(partial, target)
            _sync_directory(state_dir)
        _own_like(target, state_dir)
    finally:
        source.close()
    result = f"restored {rooms} rooms, {messages} messages from {source_path} into {target}"
    return result + (f"; the replaced database is {kept}" if kept else "")


def _continue_ids(path: Path, old: list[tuple[str, int, str]]) -> None:
    """Keep each room's epoch; give out no id the replaced database already gave out."""
    if not old:
        return
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO rooms (room, last_id, epoch) VALUES (?, ?, ?) ON CONFLICT (room) "
            "DO UPDATE SET last_id = max(last_id, excluded.last_id)",
            old,
        )
        db.execute("COMMIT")
    except sqlite3.Error as exc:
        raise BackupError(EX_CANTCREAT, f"cannot write {path}: {exc}") from None
    finally:
        db.close()


def _set_aside(target: Path) -> Path | None:
    """Rename the current database (and its WAL, which holds its last commits) aside."""
    if not target.exists():
        return None
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    kept = target.with_name(f"{target.name}.replaced-{stamp}")
    try:
        os.replace(target, kept)
        wal = target.with_name(target.name + "-wal")
        if wal.exists():
            os.replace(wal, kept.with_name(kept.name + "-wal"))
        target.with_name(target.name + "-shm").unlink(missing_ok=True)
        journal = journal_path(target)
        if journal.exists():  # messages the replaced database lacked: kept with it
            os.replace(journal, journal.with_name(f"{journal.name}.replaced-{stamp}"))
    except OSError as exc:
        raise BackupError(EX_CANTCREAT, f"cannot move {target} aside: {exc.strerror}") from None
    return kept


def _own_like(target: Path, directory: Path) -> None:
    # Run as root, the restored file would be root's: give it to the daemon's user.
    if os.geteuid() == 0:
        owner = directory.stat()
        os.chown(target, owner.st_uid, owner.st_gid)
