"""Bans, sans I/O: which client addresses and names are kept out, and until when.

A ban is daemon-wide (the owner governs every room): a banned address gets HTTP
403 at the handshake, a banned name cannot join. Each :class:`Ban` row pairs
one address (or none) with one name key (or none); banning someone online bans
every address they are connected from plus their name. The history persists
the rows (:meth:`pichat.history.History.save_bans`), so bans survive restarts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

__all__ = ["Ban", "Bans"]


@dataclasses.dataclass(frozen=True, slots=True)
class Ban:
    """One ban: an address key and/or a name key, until ``until_ms`` (0: until lifted)."""

    address: str
    name: str
    until_ms: int
    reason: str = ""
    room: str = ""
    by: str = ""
    created_ms: int = 0
    #: The banned person's name as shown (``name`` is its key).
    label: str = ""

    def active(self, now_ms: int) -> bool:
        """Whether the ban still holds."""
        return self.until_ms == 0 or now_ms < self.until_ms


class Bans:
    """Every ban in force; expired ones are dropped as they are met."""

    def __init__(self, bans: Iterable[Ban] = ()) -> None:
        self.rows: list[Ban] = list(bans)

    def address(self, key: str, now_ms: int) -> Ban | None:
        """The ban on this address key, if one holds."""
        return self._find(lambda ban: bool(ban.address) and ban.address == key, now_ms)

    def name(self, key: str, now_ms: int) -> Ban | None:
        """The ban on this name key, if one holds."""
        return self._find(lambda ban: bool(ban.name) and ban.name == key, now_ms)

    def _find(self, match: Callable[[Ban], bool], now_ms: int) -> Ban | None:
        for ban in self.rows:
            if match(ban) and ban.active(now_ms):
                return ban
        return None

    def add(self, bans: Iterable[Ban]) -> None:
        """Add bans (a later ban of the same address or name replaces the earlier)."""
        for ban in bans:
            self.rows = [
                row for row in self.rows if (row.address, row.name) != (ban.address, ban.name)
            ]
            self.rows.append(ban)

    def lift(self, *, address: str = "", name: str = "") -> list[Ban]:
        """Remove the bans of an address key or a name key; returns those removed."""
        lifted = [
            row
            for row in self.rows
            if (address and row.address == address) or (name and row.name == name)
        ]
        self.rows = [row for row in self.rows if row not in lifted]
        return lifted

    def expire(self, now_ms: int) -> bool:
        """Drop bans that ran out; whether any went."""
        kept = [row for row in self.rows if row.active(now_ms)]
        changed = len(kept) != len(self.rows)
        self.rows = kept
        return changed

    def active(self, now_ms: int) -> list[Ban]:
        """The bans in force."""
        return [row for row in self.rows if row.active(now_ms)]
