"""Presence across daemons: unique names, who is online everywhere, dead daemons' members.

Each room has a hash in Redis, name key -> ``{"d": daemon, "n": name, "a": avatar,
"m": moderator}``. A join claims its name with the :data:`~.redis_scripts.CLAIM`
script (``HSETNX`` over ``name``, ``name (2)``…), so two daemons joining the
same name at once give it to one of them; then it publishes a ``join`` on the
control channel. A leave releases the entry (only if it is still ours) and
publishes a ``leave``.

Every daemon refreshes its heartbeat key (TTL ``redis_presence_ttl``) every
third of the TTL. A daemon that finds another's heartbeat gone (``kill -9``, a
power cut) removes that daemon's entries with the atomic
:data:`~.redis_scripts.REAP` script and publishes their leaves: exactly one
survivor gets each entry, so each leave is told once. A dead daemon's members
therefore leave everywhere within the TTL plus one beat (20 s by default).

Control messages can be lost in a blip, so each beat also re-reads the hashes
(on the subscriber task, in order with the control messages) and tells the
local members what changed; and it puts back this daemon's own entries if a
survivor removed them while this daemon could not beat (a long outage).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from .errors import ProtocolError
from .protocol import Join
from .redis_scripts import CLAIM, CONTROL, DAEMONS, REAP, RELEASE, RoomKeys, daemon_key, parse_json
from .typists import typing_frame
from .validation import name_key

if TYPE_CHECKING:
    from .chat import Chat
    from .redis_history import RedisHistory
    from .redis_link import RedisLink

__all__ = ["RedisPresence", "candidates"]

logger = logging.getLogger(__name__)

UNREACHABLE = ProtocolError("unavailable", "the chat cannot reach its shared state; try again")
#: Names tried per claim: ``name`` and then ``name (2)`` to ``name (64)``.
CANDIDATES = 64

Person = tuple[str, str, bool]


def candidates(name: str, limit: int, count: int = CANDIDATES) -> list[str]:
    """``name``, ``name (2)``, ``name (3)``… as :meth:`.Room.unique_name` forms them."""
    names = [name]
    for number in range(2, count + 1):
        suffix = f" ({number})"
        if len(suffix) >= limit:
            suffix = str(number)
        names.append(name[: max(0, limit - len(suffix))].rstrip() + suffix)
    return names


def _person(entry: dict[str, Any]) -> Person:
    return (str(entry.get("n", "")), str(entry.get("a", "")), entry.get("m") is True)


@dataclasses.dataclass(slots=True)
class Claim:
    """A name this daemon holds in a room's hash, and the exact entry it wrote."""

    room: str
    key: str
    entry: str


class RedisPresence:
    """The :class:`~.roster.Roster` of a daemon that shares its rooms.

    Args:
        link: the Redis client.
        history: the writer queue (publishes go out in order with other writes).
        chat: the engine.
        ttl: ``redis_presence_ttl`` in seconds.
    """

    def __init__(self, link: RedisLink, history: RedisHistory, chat: Chat[Any], ttl: float) -> None:
        self.link = link
        self.history = history
        self.chat = chat
        self.ttl = ttl
        self._claim = link.client.register_script(CLAIM)
        self._release = link.client.register_script(RELEASE)
        self._reap = link.client.register_script(REAP)
        #: room -> name key -> person, for members on other daemons.
        self.remote: dict[str, dict[str, Person]] = {}
        #: This daemon's members -> their claim.
        self.claims: dict[Any, Claim] = {}
        #: Entries a CLAIM in flight may have written: a beat's resync must not
        #: take one for "a member of ours whose release was lost" (its reply can
        #: come before the claim's, on another connection of the pool).
        self._claiming: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._next_beat = 0.0
        #: No daemon is expired before this (monotonic): see :meth:`beat`.
        self._expire_after = 0.0

    # The engine's hooks.

    def others(self, room: str) -> Collection[Person]:
        """The room's members on the other daemons (a view of :attr:`remote`)."""
        return self.remote.get(room, {}).values()

    def online_elsewhere(self, room: str, name: str) -> bool:
        """Whether a member of this name is online on another daemon."""
        return name_key(name) in self.remote.get(room, {})

    def claim(
        self, member: Any, command: Join, moderator: bool, enter: Callable[[Any, Join, bool], None]
    ) -> None:
        """Claim a free name in Redis, then enter; ``unavailable`` if Redis does not answer."""
        # Pending like a moderator's password check: a second join is refused,
        # and a connection that closes meanwhile is noticed.
        self.chat.moderation.pending[member] = command
        self._spawn(self._claim_then_enter(member, command, moderator, enter))

    async def _claim_then_enter(
        self, member: Any, command: Join, moderator: bool, enter: Callable[[Any, Join, bool], None]
    ) -> None:
        room = self.chat.room_of(member).name
        limit = self.chat.config.limits.name
        args: list[str] = []
        for name in candidates(command.name, limit):
            entry = json.dumps(
                {"d": self.link.daemon, "n": name, "a": command.avatar, "m": moderator},
                ensure_ascii=False,
            )
            args += [name_key(name), entry]
        entries = args[1::2]
        for entry in entries:
            self._claiming[entry] = self._claiming.get(entry, 0) + 1
        try:
            index = int(await self._claim(keys=[RoomKeys(room).online], args=args))
        except (RedisError, OSError) as exc:
            self.link.failed(exc)
            if self.chat.moderation.pending.pop(member, None) is not None:
                self.chat.refuse(member, UNREACHABLE)
            return
        finally:
            # From here to the claim's record (or its release) nothing awaits.
            for entry in entries:
                if self._claiming[entry] == 1:
                    del self._claiming[entry]
                else:
                    self._claiming[entry] -= 1
        if index == 0:
            if self.chat.moderation.pending.pop(member, None) is not None:
                self.chat.refuse(
                    member, ProtocolError("bad_name", "every form of this name is taken")
                )
            return
        key, entry = args[2 * index - 2], args[2 * index - 1]
        claim = Claim(room, key, entry)
        if self.chat.moderation.pending.pop(member, None) is None or member.room is None:
            self._spawn(self._unclaim(claim))  # the connection closed meanwhile
            return
        self.claims[member] = claim
        name = json.loads(entry)["n"]
        try:
            enter(member, dataclasses.replace(command, name=name), moderator)
        except ProtocolError as error:
            self.claims.pop(member, None)
            self._spawn(self._unclaim(claim))
            self.chat.refuse(member, error)
            return
        self._announce("join", room, key, name, command.avatar, moderator)

    def left(self, member: Any, room: str, name: str, avatar: str, moderator: bool) -> None:
        """Release the member's name and tell the other daemons."""
        claim = self.claims.pop(member, None)
        if claim is None:
            return
        self._spawn(self._unclaim(claim))
        self._announce("leave", room, claim.key, name, avatar, moderator)

    async def _unclaim(self, claim: Claim) -> None:
        try:
            await self._release(keys=[RoomKeys(claim.room).online], args=[claim.key, claim.entry])
        except (RedisError, OSError) as exc:
            # The entry stays until the next beat finds it is no member of ours.
            self.link.failed(exc)

    def typing(self, room: str, name: str) -> None:
        """Relay a typing indicator (throttled by the engine) to the other daemons."""
        self.history.publish(
            CONTROL, {"d": self.link.daemon, "t": "typing", "room": room, "n": name}
        )

    def _announce(self, kind: str, room: str, key: str, name: str, avatar: str, mod: bool) -> None:
        payload = {"d": self.link.daemon, "t": kind, "room": room, "key": key}
        self.history.publish(CONTROL, {**payload, "n": name, "a": avatar, "m": mod})

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # What the other daemons say (on the subscriber task).

    def control(self, payload: dict[str, Any]) -> bool:
        """A ``join`` or ``leave`` from another daemon; whether it was one."""
        kind = payload.get("t")
        if kind == "typing":
            room_name, name = payload.get("room"), payload.get("n")
            room = self.chat.rooms.get(room_name) if isinstance(room_name, str) else None
            if room is not None and isinstance(name, str):
                self.chat.outbox.broadcast(room.members, typing_frame(name))
            return True
        if kind not in ("join", "leave"):
            return False
        room, key = payload.get("room"), payload.get("key")
        if not isinstance(room, str) or not isinstance(key, str) or room not in self.chat.rooms:
            return True
        person = _person(payload)
        if kind == "join":
            self._remote_joined(room, key, person)
        else:
            self._remote_left(room, key)
        return True

    def _remote_joined(self, room: str, key: str, person: Person) -> None:
        members = self.remote.setdefault(room, {})
        if members.get(key) == person:
            return
        members[key] = person
        self.chat.presence.guest_joined(self.chat.rooms[room], person)

    def _remote_left(self, room: str, key: str) -> None:
        person = self.remote.get(room, {}).pop(key, None)
        if person is not None:
            self.chat.presence.guest_left(self.chat.rooms[room], person[0])

    def room_reset(self, room: str) -> None:
        """A room started over: its remote members are read again at the next beat."""
        self.remote.pop(room, None)
        self._next_beat = 0.0

    # The beat (on the subscriber task).

    async def beat(self, force: bool) -> None:
        """Heartbeat, expire dead daemons, resync the hashes: every third of the TTL."""
        now = time.monotonic()
        if not force and now < self._next_beat:
            return
        self._next_beat = now + self.ttl / 3
        if force:
            # Just (re)connected: after an outage every heartbeat has lapsed, the
            # others' too. Give them one TTL to beat again before expiring anyone,
            # or their members would leave and join again for nothing.
            self._expire_after = now + self.ttl
        client = self.link.client
        me = self.link.daemon
        async with client.pipeline(transaction=False) as pipe:
            pipe.set(daemon_key(me), "1", px=int(self.ttl * 1000))
            pipe.sadd(DAEMONS, me)
            pipe.smembers(DAEMONS)
            _, _, daemons = await pipe.execute()
        others = sorted(d for d in daemons if d != me)
        if others and now >= self._expire_after:
            alive = await client.exists(*[daemon_key(d) for d in others])
            if alive < len(others):
                for daemon in others:
                    if not await client.exists(daemon_key(daemon)):
                        await self._expire(daemon)
        for room in list(self.chat.rooms):
            await self._resync(room)

    async def _expire(self, daemon: str) -> None:
        rooms = list(self.chat.rooms)
        keys = [DAEMONS] + [RoomKeys(room).online for room in rooms]
        removed = await self._reap(keys=keys, args=[daemon])
        for index in range(0, len(removed), 2):
            room, entry = rooms[int(removed[index]) - 1], parse_json(removed[index + 1])
            if not isinstance(entry, dict):
                continue
            name = str(entry.get("n", ""))
            key = name_key(name)
            self._remote_left(room, key)
            self._announce(
                "leave", room, key, name, str(entry.get("a", "")), entry.get("m") is True
            )
        if removed:
            logger.warning(
                "daemon %s stopped beating: %d of its members left", daemon, len(removed) // 2
            )

    async def _resync(self, room: str) -> None:
        """Make the remote members match the hash; put back our own entries if gone."""
        entries = await self.link.client.hgetall(RoomKeys(room).online)
        me = self.link.daemon
        seen: dict[str, Person] = {}
        ours: dict[str, str] = {}
        for key, value in entries.items():
            entry = parse_json(value)
            if not isinstance(entry, dict):
                continue
            if entry.get("d") == me:
                ours[key] = value
            else:
                seen[key] = (
                    str(entry.get("n", "")),
                    str(entry.get("a", "")),
                    entry.get("m") is True,
                )
        known = self.remote.setdefault(room, {})
        for key in [k for k in known if k not in seen]:
            self._remote_left(room, key)
        for key, person in seen.items():
            self._remote_joined(room, key, person)
        held = {claim.entry for claim in self.claims.values() if claim.room == room}
        held.update(self._claiming)
        for key, value in ours.items():
            if value not in held:  # a member of ours whose release was lost
                await self._release(keys=[RoomKeys(room).online], args=[key, value])
        for claim in self.claims.values():
            if claim.room == room and ours.get(claim.key) != claim.entry:
                await self.link.client.hsetnx(RoomKeys(room).online, claim.key, claim.entry)

    async def close(self) -> None:
        """At shutdown: remove every entry of this daemon, announce the leaves, stop beating."""
        for task in list(self._tasks):
            await asyncio.gather(task, return_exceptions=True)
        try:
            await self._expire(self.link.daemon)
            await self.link.client.delete(daemon_key(self.link.daemon))
        except (RedisError, OSError) as exc:
            logger.warning("redis: could not remove this daemon's members: %s", exc)
