"""What moderators set on a room (lock, slow mode, mutes), and how it is kept.

A room locked against a raid must stay locked when the watchdog or a package
upgrade restarts the daemon, so the rules are stored with the history
(:meth:`pichat.history.History.save_rules`). Mutes end at a wall-clock time for
the same reason: a monotonic clock starts again with the process. Sans I/O: the
engine passes the clock in.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any, TypeGuard

__all__ = ["MAX_TOMBSTONES", "RoomRules", "rules_from_json", "rules_to_json"]

#: Deleted ids remembered per room for pages that were away when they went.
MAX_TOMBSTONES = 1000


@dataclasses.dataclass
class RoomRules:
    """One room's rules."""

    locked: bool = False
    slow: int = 0
    #: name key or address key -> wall-clock ms the mute ends.
    muted: dict[str, int] = dataclasses.field(default_factory=dict)
    #: Ids of deleted messages, newest last: a page that was away when they
    #: were deleted (a phone in a pocket) still shows them until told.
    deleted: collections.deque[int] = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=MAX_TOMBSTONES)
    )
    #: The highest id a clear removed (0: never cleared).
    cleared: int = 0
    #: Slow mode: person (address key) -> monotonic time of the last post. Not
    #: stored: after a restart everyone may post once.
    last_post: dict[Any, float] = dataclasses.field(default_factory=dict)

    def state(self) -> dict[str, Any]:
        """The room's state as frames show it."""
        return {"locked": self.locked, "slow": self.slow}

    def expire(self, now_ms: int, now: float) -> bool:
        """Forget ended mutes and slow-mode posts older than the wait; whether a mute went.

        Without this, every address that ever posted in slow mode, and every
        mute nobody tested again, would stay in memory for the daemon's life.
        """
        ended = [key for key, until in self.muted.items() if until <= now_ms]
        for key in ended:
            del self.muted[key]
        if self.last_post:
            self.last_post = {p: t for p, t in self.last_post.items() if now - t < self.slow}
        return bool(ended)

    def removed(self, since: int) -> dict[str, Any]:
        """What a page resuming after ``since`` must take away: the welcome's fields.

        ``deleted``: the deleted ids up to ``since`` (those after it are simply not
        replayed); ``cleared``: every id up to it went in a clear.
        """
        fields: dict[str, Any] = {}
        deleted = [message_id for message_id in self.deleted if message_id <= since]
        if deleted:
            fields["deleted"] = deleted
        if self.cleared:
            fields["cleared"] = self.cleared
        return fields

    @property
    def default(self) -> bool:
        """Whether the rules are those of a room nobody moderated (nothing to store)."""
        return (
            not self.locked
            and not self.slow
            and not self.muted
            and not self.deleted
            and not self.cleared
        )


def _whole(value: object) -> TypeGuard[int]:
    """A positive int (JSON's true is not one)."""
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def rules_to_json(rules: dict[str, RoomRules]) -> dict[str, Any]:
    """The stored form of every room's rules (rooms at their defaults left out)."""
    return {
        room: {
            "locked": r.locked,
            "slow": r.slow,
            "muted": dict(r.muted),
            "deleted": list(r.deleted),
            "cleared": r.cleared,
        }
        for room, r in sorted(rules.items())
        if not r.default
    }


def rules_from_json(data: object) -> dict[str, RoomRules]:
    """Rules from their stored form; anything malformed is skipped, not fatal.

    The stored value is pichat's own, but a hand-edited or damaged one must not
    keep the daemon from starting: a skipped rule is a room unlocked, no worse
    than before rules were kept.
    """
    rules: dict[str, RoomRules] = {}
    if not isinstance(data, dict):
        return rules
    for room, value in data.items():
        if not isinstance(room, str) or not isinstance(value, dict):
            continue
        locked = value.get("locked") is True
        slow = value.get("slow")
        muted = value.get("muted")
        deleted = value.get("deleted")
        cleared = value.get("cleared")
        rules[room] = RoomRules(
            locked=locked,
            slow=slow if _whole(slow) else 0,
            muted={
                key: until
                for key, until in (muted.items() if isinstance(muted, dict) else ())
                if isinstance(key, str) and _whole(until)
            },
            deleted=collections.deque(
                (i for i in (deleted if isinstance(deleted, list) else ()) if _whole(i)),
                maxlen=MAX_TOMBSTONES,
            ),
            cleared=cleared if _whole(cleared) else 0,
        )
    return rules
