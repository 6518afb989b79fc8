"""Presence, coalesced, sans I/O: one frame per room per tick, however many join or leave.

A restart, a package upgrade or a Wi-Fi blip brings everyone back at once. With
one presence frame per join sent to every member, ``n`` people rejoining cost
``n²`` deliveries (12.5 million at 5000 online) and the room took half a minute
to refill. Here each join or leave only marks its room; a short tick later one
frame tells every member all the joins and leaves since the last one, with the
count, so a tick costs one encoding and one delivery per member whatever the
number of joins in it. The tick grows with the room (:func:`tick_for`), so
presence costs at most about :data:`PRESENCE_BUDGET` deliveries a second however
many are online.

The frame lists ``left`` (every name someone left under during the tick) and
``joined`` (whoever joined during the tick and is still online), and the client
applies ``left`` first, then ``joined``. That is right for every member whatever
moment of the tick its view is from: members online before the tick, and
members who joined during it (their welcome showed the room at their join).

The clock is not read here: the engine is given ``schedule(delay, callback)``
(the daemon's is the event loop's ``call_later``); without one, each event is
flushed at once, which is what the engine's unit tests mostly want.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from .errors import ProtocolError
from .member import Member, Outbox
from .protocol import online_frame, presence_frame, wire_frame

if TYPE_CHECKING:
    from .room import Room

__all__ = ["PRESENCE_TICK", "Presence", "Schedule", "parse_online", "tick_for"]

#: Seconds between two presence frames in a small room: short enough to feel
#: instant, long enough that a reconnect storm shares each frame among many joins.
PRESENCE_TICK = 0.05
#: The longest tick, for the largest rooms.
PRESENCE_TICK_MAX = 1.0
#: Presence deliveries per second the tick aims at, at most, whatever the room's
#: size: a tick costs one write per member, so the tick grows with the room
#: (1000 online: 0.4 s, 2500 and more: 1 s). A page of 5000 shows joins a second late at
#: worst; the cost of presence stays flat instead of growing with the room.
PRESENCE_BUDGET = 2500

M = TypeVar("M", bound=Member)

#: ``(name, avatar, moderator)``: how a frame lists someone.
Person = tuple[str, str, bool]


class Cancellable(Protocol):
    """What ``schedule`` returns (an :class:`asyncio.TimerHandle` is one)."""

    def cancel(self) -> None:
        """Do not call the callback after all."""


#: ``schedule(delay, callback)``: call ``callback`` once, ``delay`` seconds from now.
Schedule = Callable[[float, Callable[[], None]], Cancellable]


@dataclasses.dataclass(slots=True)
class _Pending(Generic[M]):
    """What happened in one room since its last presence frame."""

    joined: dict[M, None] = dataclasses.field(default_factory=dict)
    #: Who joined on another daemon (shared rooms), by name.
    guests: dict[str, Person] = dataclasses.field(default_factory=dict)
    #: Names someone left under, in order, each once.
    left: dict[str, None] = dataclasses.field(default_factory=dict)


class Presence(Generic[M]):
    """The rooms' pending joins and leaves, and the tick that sends them.

    Args:
        outbox: where the frames go.
        schedule: arms the tick; ``None`` sends each event at once.
        count: how many are online in a room (on every daemon when rooms are shared).
        people: a page of the room's online list after the first ``after``.
    """

    def __init__(
        self,
        outbox: Outbox[M],
        schedule: Schedule | None,
        count: Callable[[Room[M]], int],
        people: Callable[[Room[M], int], list[Person]],
    ) -> None:
        self.outbox = outbox
        self.schedule = schedule
        self.count = count
        self.people = people
        self._pending: dict[Room[M], _Pending[M]] = {}
        self._handle: Cancellable | None = None
        #: Set by :meth:`cancel` (shutdown): nothing is told or scheduled any more.
        self.stopped = False
        #: Presence frames sent (one per room per tick with events), for monitoring.
        self.frames = 0

    def joined(self, room: Room[M], member: M) -> None:
        """``member`` is now online in ``room`` (its welcome is sent)."""
        self._of(room).joined[member] = None
        self._arm(room)

    def left(self, room: Room[M], member: M, name: str) -> None:
        """``member``, online under ``name``, left ``room``."""
        pending = self._of(room)
        pending.joined.pop(member, None)
        pending.left[name] = None
        self._arm(room)

    def guest_joined(self, room: Room[M], person: Person) -> None:
        """Someone joined ``room`` on another daemon."""
        self._of(room).guests[person[0]] = person
        self._arm(room)

    def guest_left(self, room: Room[M], name: str) -> None:
        """Someone left ``room`` on another daemon."""
        pending = self._of(room)
        pending.guests.pop(name, None)
        pending.left[name] = None
        self._arm(room)

    def flush(self) -> None:
        """Send each room's frame now: the tick."""
        self._handle = None
        pending, self._pending = self._pending, {}
        for room, events in pending.items():
            members = room.members
            moderators = room.moderators
            joined = []
            for member in events.joined:
                identity = members.get(member)
                if identity is not None:
                    joined.append((identity[0], identity[1], member in moderators))
            joined.extend(events.guests.values())
            frame = wire_frame(presence_frame(joined, events.left, self.count(room)))
            self.frames += 1
            self.outbox.broadcast(members, frame)

    def cancel(self) -> None:
        """Forget what is pending and stop the tick for good (shutdown: nobody is told)."""
        self.stopped = True
        self._pending.clear()
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def page(self, room: Room[M], member: M, after: int) -> None:
        """Answer ``{"type": "online", "after": N}``: the next people of the list."""
        frame = online_frame(after, self.people(room, after), self.count(room))
        self.outbox.send(member, wire_frame(frame))

    def _of(self, room: Room[M]) -> _Pending[M]:
        pending = self._pending.get(room)
        if pending is None:
            pending = self._pending[room] = _Pending()
        return pending

    def _arm(self, room: Room[M]) -> None:
        if self.stopped:
            # A join in the last moments of a shutdown: no timer may outlive it.
            self._pending.clear()
            return
        if self.schedule is None:
            self.flush()
        elif self._handle is None:
            self._handle = self.schedule(tick_for(len(room.members)), self.flush)


def tick_for(online: int) -> float:
    """The presence tick of a room with ``online`` members (see :data:`PRESENCE_BUDGET`)."""
    return min(PRESENCE_TICK_MAX, max(PRESENCE_TICK, online / PRESENCE_BUDGET))


def parse_online(frame: dict[str, Any]) -> int:
    """The ``after`` of an ``online`` frame: how many of the list the client has.

    Raises:
        ProtocolError: ``bad_after`` unless a non-negative integer (or absent: 0).
    """
    after = frame.get("after", 0)
    if type(after) is not int or after < 0:
        raise ProtocolError("bad_after", "after must be how many people you have listed")
    return after
