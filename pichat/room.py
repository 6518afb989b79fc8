"""Room state, sans I/O: who is online, who listens, the retained history, ids, resume.

The chat engine owns the rules; a room only sees opaque member objects and
keeps the data those rules read. Keeping it free of I/O lets unique names, no
gap and no duplicate on resume, pages and retention be tested with plain calls.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Hashable, Iterable
from typing import Any, Generic, NamedTuple, TypeVar

from .protocol import Message, people_json
from .retention import Cut
from .validation import name_key

__all__ = ["LISTED", "Page", "Room"]

#: The most people a ``welcome`` or an ``online`` page lists (the count is always exact).
LISTED = 100

M = TypeVar("M", bound=Hashable)


class Page(NamedTuple):
    """A run of consecutive retained messages and what the client must know about it.

    ``more``: messages remain after the page. ``gap``: retention dropped some of
    the messages the client asked for.
    """

    messages: list[Message]
    more: bool
    gap: bool


class Room(Generic[M]):
    """One chat room: its members, its audiences and its retained history.

    Args:
        name: the room's name (from the site configuration).
        epoch: the identity of this history (a new one when the history restarts).
        history: the retained messages loaded from the store, oldest first.
        last_id: the highest id ever assigned in this room (ids are never reused,
            even when retention dropped the message).
    """

    def __init__(
        self, name: str, epoch: str, history: Iterable[Message] = (), last_id: int = 0
    ) -> None:
        self.name = name
        self.epoch = epoch
        self.history: collections.deque[Message] = collections.deque(history)
        self.last_id = max(last_id, self.history[-1].id if self.history else 0)
        #: The highest id committed: what any client may have seen. ``last_id``
        #: runs ahead of it while messages are on their way to the history.
        self.stored_id = self.last_id
        #: The highest id retention dropped: a resume from below it missed
        #: messages (``gap``). A moderator's delete or clear does not move it;
        #: what they removed was not lost to the client.
        self.floor = self.history[0].id - 1 if self.history else self.last_id
        # Joined members (online): member -> (name, avatar), in join order.
        self.members: dict[M, tuple[str, str]] = {}
        # Who receives messages, by the dialect they are encoded in (a key the
        # engine chooses); joined members and listeners that never join alike.
        self.audiences: dict[Any, dict[M, None]] = {}
        #: Joined members who are moderators (their frames carry the badge).
        self.moderators: set[M] = set()
        # The name keys (validation.name_key) of everyone online.
        self._taken: set[str] = set()
        # The encoded first LISTED people (people_json), shared by every welcome
        # until the membership it shows changes.
        self._listing: bytes | None = None

    # Membership.

    def unique_name(self, name: str, limit: int) -> str:
        """``name``, or ``name (2)``, ``name (3)``… when someone online has it.

        Names compare by :func:`~.validation.name_key` (case, width and invisible
        characters ignored); the suffix never pushes past ``limit``.
        """
        if name_key(name) not in self._taken:
            return name
        number = 2
        while True:
            suffix = f" ({number})"
            if len(suffix) >= limit:  # too short a limit for the readable form
                suffix = str(number)
            candidate = name[: max(0, limit - len(suffix))].rstrip() + suffix
            if name_key(candidate) not in self._taken:
                return candidate
            number += 1

    def join(self, member: M, name: str, avatar: str, limit: int, moderator: bool = False) -> str:
        """Add a member under a unique name; returns the name it got."""
        assigned = self.unique_name(name, limit)
        self.members[member] = (assigned, avatar)
        self._taken.add(name_key(assigned))
        if moderator:
            self.moderators.add(member)
        if len(self.members) <= LISTED:
            self._listing = None  # the newcomer is among the first LISTED
        return assigned

    def taken(self, name: str) -> bool:
        """Whether someone online has this name (compared by key)."""
        return name_key(name) in self._taken

    def named(self, name: str) -> list[M]:
        """The members online under this name (by key): one, or none."""
        key = name_key(name)
        return [member for member, (own, _) in self.members.items() if name_key(own) == key]

    def listen(self, member: M, audience: Any) -> None:
        """Deliver the room's messages to ``member``, encoded for ``audience``."""
        self.audiences.setdefault(audience, {})[member] = None

    def leave(self, member: M) -> tuple[str, str] | None:
        """Remove a member or listener; returns ``(name, avatar)`` for a member."""
        for audience in self.audiences.values():
            audience.pop(member, None)
        identity = self.members.pop(member, None)
        if identity is not None:
            self._taken.discard(name_key(identity[0]))
            # Whether it was among the first LISTED would cost a scan to know.
            self._listing = None
        self.moderators.discard(member)
        return identity

    def online(self) -> list[tuple[str, str]]:
        """``(name, avatar)`` of everyone online, in join order."""
        return list(self.members.values())

    def people(self) -> list[tuple[str, str, bool]]:
        """``(name, avatar, moderator)`` of everyone online, in join order."""
        moderators = self.moderators
        return [(n, a, member in moderators) for member, (n, a) in self.members.items()]

    def listing(self) -> bytes:
        """The first :data:`LISTED` people online (join order), encoded: the welcome's list.

        Joins past the first hundred append to the end of the join order, so in a
        reconnect storm this is built once and shared by every welcome after it.
        """
        if self._listing is None:
            self._listing = people_json(self.people_page(0))
        return self._listing

    def people_page(self, after: int) -> list[tuple[str, str, bool]]:
        """At most :data:`LISTED` people, after the first ``after`` in join order."""
        moderators = self.moderators
        window = itertools.islice(self.members.items(), after, after + LISTED)
        return [(n, a, member in moderators) for member, (n, a) in window]

    # Messages.

    def create(
        self, name: str, avatar: str, text: str, now_ms: int, moderator: bool = False
    ) -> Message:
        """A new message with the next id; it enters the history once stored."""
        self.last_id += 1
        return Message(self.last_id, now_ms, name, avatar, text, moderator)

    def append(self, message: Message) -> None:
        """Add a stored message to the history (retention is applied by :meth:`trim`)."""
        self.history.append(message)
        self.stored_id = max(self.stored_id, message.id)

    def trim(self, cut: Cut) -> int:
        """Drop what ``cut`` does not keep; returns how many messages went.

        Ids and dates grow together, so what a cut drops is always at the front.
        """
        history = self.history
        dropped = 0
        while history and not cut.keeps(history[0].id, history[0].ms):
            self.floor = max(self.floor, history.popleft().id)
            dropped += 1
        return dropped

    def remove(self, message_id: int) -> Message | None:
        """Take a retained message out of the history (a moderator deleted it)."""
        history = self.history
        index = self._index_after(message_id - 1)
        if index < len(history) and history[index].id == message_id:
            message = history[index]
            del history[index]
            return message
        return None

    def clear(self) -> int:
        """Empty the history (ids go on from ``last_id``); returns how many went."""
        count = len(self.history)
        self.history.clear()
        return count

    def recent(self, count: int, budget: int) -> list[Message]:
        """The newest messages, at most ``count`` and ``budget`` bytes, oldest first."""
        picked: list[Message] = []
        size = 0
        for message in reversed(self.history):
            if len(picked) >= count:
                break
            size += len(message.v1_json())
            if size > budget and picked:
                break
            picked.append(message)
        picked.reverse()
        return picked

    def after(self, after: int, count: int, budget: int, until: int | None = None) -> Page:
        """The oldest retained messages after id ``after``: one page of a resume.

        At most ``count`` messages and ``budget`` bytes, but at least one when
        any is left, so that paging always advances; none above ``until`` (what
        a member receives live already).
        """
        history = self.history
        gap = after < self.floor
        start = self._index_after(after)
        picked: list[Message] = []
        size = 0
        for message in itertools.islice(history, start, None):
            if until is not None and message.id > until:
                break
            size += len(message.v1_json())
            if picked and (len(picked) >= count or size > budget):
                return Page(picked, True, gap)
            picked.append(message)
        return Page(picked, False, gap)

    def _index_after(self, after: int) -> int:
        """The position of the first message with an id above ``after``."""
        history = self.history
        if not history or after < history[0].id:
            return 0
        # Ids are increasing, usually contiguous: guess the position, then check.
        guess = after - history[0].id + 1
        if guess <= len(history) and history[guess - 1].id == after:
            return guess
        low, high = 0, len(history)  # not contiguous (a failed store burned an id)
        while low < high:
            middle = (low + high) // 2
            if history[middle].id <= after:
                low = middle + 1
            else:
                high = middle
        return low
