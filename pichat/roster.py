"""Who is online on the other daemons: the hooks the engine calls when rooms are shared.

A daemon alone has none (``Chat.roster`` is ``None``) and the engine's presence is
its own rooms'. With Redis (:mod:`.redis_presence`) a join first claims its name
cluster-wide, a leave releases it, and ``welcome.online`` and the counts include
the members of every daemon. Kept as a protocol here so the engine stays sans I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any, Protocol

from .protocol import Join

__all__ = ["Roster"]


class Roster(Protocol):
    """Cluster presence, as the engine sees it."""

    def claim(
        self, member: Any, command: Join, moderator: bool, enter: Callable[[Any, Join, bool], None]
    ) -> None:
        """Take a name no daemon has given, then ``enter(member, command, moderator)``.

        ``command.name`` is replaced by the name taken; a failure is sent to the
        member as an error frame instead.
        """

    def left(self, member: Any, room: str, name: str, avatar: str, moderator: bool) -> None:
        """A member of this daemon left: release its name, tell the other daemons."""

    def typing(self, room: str, name: str) -> None:
        """A member of this daemon is typing (already throttled): tell the other daemons."""

    def others(self, room: str) -> Collection[tuple[str, str, bool]]:
        """``(name, avatar, moderator)`` of the room's members on the other daemons.

        A live view, not a copy: counting it is what every presence frame and
        welcome does, and must not cost a list of the whole room.
        """

    def online_elsewhere(self, room: str, name: str) -> bool:
        """Whether someone of this name (by key) is online on another daemon."""
