"""Which dated backups ``pichat backup --keep N DIR`` writes and which it removes.

No I/O here: :mod:`.backup` lists the directory, asks :func:`next_name` for the
new file's name and :func:`to_remove` for the old ones to delete, and does it.

A backup of the rotation is ``pichat-YYYYMMDDTHHMMSSZ.sqlite3`` (UTC), with
``-2``, ``-3``... when two are taken within one second. Only names of exactly
that form count: anything else in the directory (a copy made by hand, a file
of another program, a partial copy) is never removed.

The newest backups are found by the time in their names, not by the files'
times, which a copy or an archive may change. The file just written is always
kept, even when its name sorts first: a Pi without a real-time clock can boot
with a clock behind the last backup's, and the newest copy must not be the one
deleted.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable

__all__ = ["PATTERN", "leftovers", "next_name", "to_remove"]

PATTERN = re.compile(r"pichat-(\d{8}T\d{6}Z)(?:-([1-9]\d*))?\.sqlite3")
# The partial copy of one being written (backup.py's staging name for it).
_PARTIAL = re.compile(r"\.(pichat-\d{8}T\d{6}Z(?:-[1-9]\d*)?\.sqlite3)\.partial-\d+")


def _key(name: str) -> tuple[str, int] | None:
    match = PATTERN.fullmatch(name)
    if match is None:
        return None
    return match.group(1), int(match.group(2) or 1)


def leftovers(names: Iterable[str]) -> list[str]:
    """The partial copies among ``names``: left by a backup cut off (a power cut, a kill).

    Only safe to remove while no other backup into the directory runs, which
    ``pichat backup --keep`` makes sure of with a lock.
    """
    return sorted(name for name in names if _PARTIAL.fullmatch(name))


def next_name(now: datetime.datetime, existing: Iterable[str]) -> str:
    """The name of a backup taken at ``now`` (aware), not among ``existing``."""
    stamp = now.astimezone(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    taken = set(existing)
    name, count = f"pichat-{stamp}.sqlite3", 1
    while name in taken:
        count += 1
        name = f"pichat-{stamp}-{count}.sqlite3"
    return name


def to_remove(names: Iterable[str], keep: int, new: str) -> list[str]:
    """The backups among ``names`` to delete so that ``keep`` remain, ``new`` one of them.

    Args:
        names: the directory's entries (others than backups are ignored).
        keep: how many backups to keep, at least 1.
        new: the backup just written; never removed.

    Returns:
        the names to delete, oldest first.
    """
    if keep < 1:
        raise ValueError("keep must be at least 1")
    dated: list[tuple[tuple[str, int], str]] = []
    for name in set(names):
        key = _key(name)
        if key is not None and name != new:
            dated.append((key, name))
    dated.sort()
    others = keep - 1
    return [name for _, name in (dated[:-others] if others else dated)]
