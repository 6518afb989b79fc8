"""Room state, sans I/O: who is online, the retained history, id assignment, resume.

The server owns the sockets; a room only sees opaque member objects. Keeping
this logic free of I/O lets the rules (unique names, no gap and no duplicate on
resume, retention) be tested with plain calls.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar

from .protocol import Message
from .retention import Retention

__all__ = ["Room"]

M = TypeVar("M", bound=Hashable)


class Room(Generic[M]):
    """One chat room: its members, listeners and retained history.

    Args:
        name: the room's name (from the site configuration).
        retention: which messages the room keeps.
        history: the retained messages loaded from the store, oldest first.
        last_id: the highest id ever assigned in this room (ids are never reused,
            even when retention dropped the message).
    """

    def __init__(
        self, name: str, retention: Retention, history: Iterable[Message] = (), last_id: int = 0
    ) -> None:
        self.name = name
        self.retention = retention
        self.history: collections.deque[Message] = collections.deque(history)
        self.last_id = max(last_id, self.history[-1].id if self.history else 0)
        # Joined pichat.v1 clients: member -> (name, avatar), in join order.
        self.members: dict[M, tuple[str, str]] = {}
        # Legacy (echo-protocol) clients receive messages but are not "online".
        self.listeners: set[M] = set()
        self._taken: set[str] = set()

    # Membership.

    def unique_name(self, name: str, limit: int) -> str:
        """``name``, or ``name (2)``, ``name (3)``… when someone online has it.

        Names compare case-insensitively; the suffix never pushes past ``limit``.
        """
        if name.casefold() not in self._taken:
            return name
        number = 2
        while True:
            suffix = f" ({number})"
            if len(suffix) >= limit:  # too short a limit for the readable form
                suffix = str(number)
            candidate = name[: max(0, limit - len(suffix))].rstrip() + suffix
            if candidate.casefold() not in self._taken:
                return candidate
            number += 1

    def join(self, member: M, name: str, avatar: str, limit: int) -> str:
        """Add a member under a unique name; returns the name it got."""
        assigned = self.unique_name(name, limit)
        self.members[member] = (assigned, avatar)
        self._taken.add(assigned.casefold())
        return assigned

    def leave(self, member: M) -> tuple[str, str] | None:
        """Remove a member or listener; returns ``(name, avatar)`` for a member."""
        self.listeners.discard(member)
        identity = self.members.pop(member, None)
        if identity is not None:
            self._taken.discard(identity[0].casefold())
        return identity

    def online(self) -> list[tuple[str, str]]:
        """``(name, avatar)`` of everyone online, in join order."""
        return list(self.members.values())

    # Messages.

    def create(self, name: str, avatar: str, text: str, now_ms: int) -> Message:
        """A new message with the next id; it enters the history once stored."""
        self.last_id += 1
        return Message(self.last_id, now_ms, name, avatar, text)

    def append(self, message: Message) -> None:
        """Add a stored message to the history and apply the count limit."""
        self.history.append(message)
        excess = len(self.history) - self.retention.max_messages
        for _ in range(excess):
            self.history.popleft()

    def expire(self, now_ms: int) -> int:
        """Apply the count and age limits (after a reload or as time passes).

        Returns:
            how many messages were dropped.
        """
        dropped = 0
        while len(self.history) > self.retention.max_messages:
            self.history.popleft()
            dropped += 1
        oldest = self.retention.oldest_date_ms(now_ms)
        if oldest is not None:
            while self.history and self.history[0].ms < oldest:
                self.history.popleft()
                dropped += 1
        return dropped

    def recent(self, count: int) -> list[Message]:
        """The last ``count`` messages, oldest first."""
        if count <= 0:
            return []
        start = max(0, len(self.history) - count)
        return list(itertools.islice(self.history, start, None))

    def since(self, since: int, replay: int) -> tuple[list[Message], bool, bool]:
        """The messages after ``since``, for a reconnecting client.

        Returns:
            ``(messages, resumed, gap)``. ``gap`` is true when retention already
            dropped some messages after ``since``. A cursor from the future
            (the history was wiped, or another server) cannot be honoured: the
            client gets the usual replay with ``resumed`` false and ``gap`` true.
        """
        if since > self.last_id:
            return self.recent(replay), False, True
        if not self.history:
            return [], True, since < self.last_id
        first = self.history[0].id
        gap = since < first - 1
        if since < first:
            return list(self.history), True, gap
        # ids in the history are increasing; skip to the first one after `since`.
        offset = since - first + 1
        if offset - 1 < len(self.history) and self.history[offset - 1].id == since:
            messages = list(itertools.islice(self.history, offset, None))
        else:  # ids not contiguous (a failed store burned one): search.
            messages = [m for m in self.history if m.id > since]
        return messages, True, gap
