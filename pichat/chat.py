"""The chat engine, sans I/O: rooms, join / say / stored / failed, presence, resume.

Like websockets' own ``protocol.py`` (bytes in, events out), this module is
driven by plain calls, a frame from a client or a commit from the history, and
answers by handing already-encoded frames to an :class:`Outbox`. It never
touches a socket, so every chat rule is tested with a fake outbox and a fake
history. The clock is a parameter for the same reason.

Two dialects share the engine: ``pichat.v1`` (:mod:`.v1`) and the seed
tutorial's ``echo-protocol`` (:mod:`.legacy`). Each is a :class:`Dialect`; the
engine dispatches to the member's dialect and never asks which one it is.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from .chatconfig import ChatConfig, ChatStats
from .history import Entry, History
from .member import Dialect, Member, Outbox
from .moderation import Moderation
from .password_guard import Verifier, verify_now
from .presence import Presence, Schedule
from .protocol import (
    Join,
    Message,
    ProtocolError,
    error_frame,
    history_frame,
    people_json,
    welcome_frame,
    wire_frame,
)
from .ratelimit import TokenBucket
from .room import LISTED, Room
from .roster import Roster

__all__ = ["Chat", "ChatConfig", "ChatStats", "Dialect", "Member", "Outbox"]

logger = logging.getLogger(__name__)

UNAVAILABLE = ProtocolError("unavailable", "the message could not be stored; try again")


M = TypeVar("M", bound=Member)


class Chat(Generic[M]):
    """Every room of the daemon and the rules of the chat.

    Args:
        outbox: where frames for clients go.
        history: where messages are stored; the engine must be its listener.
        config: limits, retention, replay.
        monotonic: seconds, for rate limits.
        wall_ms: the date of a new message, epoch milliseconds.
        verifier: checks a moderator's password (scrypt); the daemon's runs in a
            thread and answers later.
        schedule: arms the presence tick (:mod:`.presence`); without one each
            join and leave is told at once.
    """

    def __init__(
        self,
        outbox: Outbox[M],
        history: History,
        config: ChatConfig,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        verifier: Verifier = verify_now,
        schedule: Schedule | None = None,
    ) -> None:
        self.outbox = outbox
        self.history = history
        self.config = config
        self.monotonic = monotonic
        self.wall_ms = wall_ms
        self.rooms: dict[str, Room[M]] = {}
        #: Every open connection, joined or not, in any room.
        self.connections: set[M] = set()
        #: One bucket per client address, shared by its connections.
        self.address_buckets: dict[str, TokenBucket] = {}
        self.moderation = Moderation(self, verifier)
        #: Set at shutdown: leaving members send no presence then.
        self.closing = False
        self.stats = ChatStats()
        #: The other daemons' members when rooms are shared (:mod:`.roster`); None alone.
        self.roster: Roster | None = None
        self.presence: Presence[M] = Presence(outbox, schedule, self.headcount, self.people_page)

    # Configuration and rooms.

    def configure(self, config: ChatConfig) -> None:
        """Take new limits and retention; open connections keep their place."""
        self.config = config
        limits = config.limits
        now = self.monotonic()
        for room in self.rooms.values():
            for audience in room.audiences.values():
                for member in audience:
                    if member.bucket is not None:
                        member.bucket.reconfigure(limits.rate_messages, limits.rate_window, now)
        for bucket in self.address_buckets.values():
            bucket.reconfigure(config.rate_per_address, limits.rate_window, now)

    async def load_rooms(self, names: Iterable[str]) -> None:
        """Load the history of every named room not loaded yet."""
        for name in names:
            if name not in self.rooms:
                loaded = await self.history.load(name, self.config.retention.max_messages)
                self.rooms[name] = Room(name, loaded.epoch, loaded.messages, loaded.last_id)
                logger.info(
                    "room %s: %d messages, last id %d",
                    name,
                    len(loaded.messages),
                    self.rooms[name].last_id,
                )

    async def expire(self) -> None:
        """Apply retention to every room, in memory and in the history; end mutes."""
        now_ms = self.wall_ms()
        for room in self.rooms.values():
            cut = self.config.retention.cut(room.last_id, now_ms)
            dropped = room.trim(cut)
            removed = await self.history.trim(room.name, cut)
            if dropped or removed:
                logger.info(
                    "room %s: retention dropped %d messages", room.name, max(dropped, removed)
                )
        self.moderation.expire()

    # Connections.

    def opened(self, member: M) -> None:
        """A connection is open: place it in its site's room and greet it in its dialect."""
        member.room = self.rooms[member.site.room]
        self.connections.add(member)
        member.dialect.opened(self, member)

    def received(self, member: M, data: str | bytes) -> None:
        """One frame from a client; a broken rule is answered with an ``error`` frame."""
        if member.room is None:
            return  # dropped (too slow) while its last frames were in flight
        try:
            if isinstance(data, bytes):
                raise ProtocolError("binary_frame", "only text frames are accepted")
            member.dialect.received(self, member, data)
        except ProtocolError as error:
            self.refuse(member, error)

    def refuse(self, member: M, error: ProtocolError) -> None:
        """Answer a broken rule with an ``error`` frame (and count it)."""
        self.stats.errors[error.code] += 1
        self.outbox.send(member, wire_frame(error_frame(error)))

    def closed(self, member: M) -> None:
        """A connection ended: leave its room and tell the others."""
        self.connections.discard(member)
        self.moderation.pending.pop(member, None)  # a password check answers to nobody
        room = member.room
        if room is None:
            return
        member.room = None
        moderator = member in room.moderators
        identity = room.leave(member)
        if identity is not None and self.roster is not None:
            self.roster.left(member, room.name, *identity, moderator)
        if identity is not None and not self.closing:
            self.presence.left(room, member, identity[0])

    def remove(self, member: M, code: int, reason: str) -> None:
        """Put a connection out (kick, ban): out of its room now, then closed.

        Leaving first means nothing it still sends is heard, and everyone sees
        it leave even before its closing handshake ends.
        """
        self.closed(member)
        self.outbox.close(member, code, reason)

    def new_bucket(self) -> TokenBucket:
        """A rate limiter with the current limits."""
        limits = self.config.limits
        return TokenBucket(limits.rate_messages, limits.rate_window, self.monotonic())

    def room_of(self, member: M) -> Room[M]:
        """The member's room (it has one from :meth:`opened` until :meth:`closed`)."""
        room = member.room
        assert room is not None, "member is not open"
        return room

    # The rules.

    def join(self, member: M, command: Join) -> None:
        """Enter the room: welcome with history and who is online, tell the others.

        Registering and building the welcome happen in one call: a message
        committed in between is either in the history or broadcast to the new
        member, never both, never neither.
        """
        if member.name is not None or member in self.moderation.pending:
            raise ProtocolError("already_joined", "you have already joined")
        self.room_of(member)
        self.moderation.admit(member, command, self._admitted)

    def _admitted(self, member: M, command: Join, moderator: bool) -> None:
        """Admitted: with shared rooms the name is claimed cluster-wide first."""
        if self.roster is not None:
            self.roster.claim(member, command, moderator, self._enter)
        else:
            self._enter(member, command, moderator)

    def headcount(self, room: Room[M]) -> int:
        """Members online in the room, on every daemon."""
        roster = self.roster
        return len(room.members) + (len(roster.others(room.name)) if roster else 0)

    def people_page(self, room: Room[M], after: int) -> list[tuple[str, str, bool]]:
        """At most :data:`~.room.LISTED` people online after the first ``after``.

        Alone, the room's join order; with shared rooms, this daemon's members
        first, then the other daemons' (each daemon lists its own first, so two
        pages may order the room differently; the count is the same everywhere).
        """
        if self.roster is None:
            return room.people_page(after)
        everyone = itertools.chain(room.people(), self.roster.others(room.name))
        return list(itertools.islice(everyone, after, after + LISTED))

    def _enter(self, member: M, command: Join, moderator: bool) -> None:
        """The join, once admitted (for a moderator, after the password check)."""
        room = self.room_of(member)
        config = self.config
        name = room.join(member, command.name, command.avatar, config.limits.name, moderator)
        room.listen(member, member.dialect)
        member.name = name
        member.moderator = moderator
        member.joined_ms = self.wall_ms()
        member.avatar = command.avatar
        member.bucket = self.new_bucket()
        member.live_after = room.stored_id
        more = resumed = gap = False
        if command.since is None:
            history = room.recent(config.replay, config.replay_bytes)
        elif command.since > room.stored_id or (
            command.epoch is not None and command.epoch != room.epoch
        ):
            # A cursor from another history (a new database, a restore, another
            # server): resuming from it would skip or repeat messages.
            history, gap = room.recent(config.replay, config.replay_bytes), True
            changed = command.epoch is not None and command.epoch != room.epoch
            self.stats.resumes["epoch_change" if changed else "gap"] += 1
        else:
            history, more, gap = room.after(
                command.since, config.replay, config.replay_bytes, room.stored_id
            )
            resumed = True
            self.stats.resumes["gap" if gap else "resumed"] += 1
        rules = self.moderation.room_rules(room)
        state = rules.state()
        if resumed:
            # What moderators removed while the page was away, so it shows it no more.
            state.update(rules.removed(command.since or 0))
        count = self.headcount(room)
        welcome = welcome_frame(
            name=name,
            avatar=command.avatar,
            room=room.name,
            title=member.site.title,
            limits=config.limits,
            history=history,
            online=room.listing()
            if self.roster is None
            else people_json(self.people_page(room, 0)),
            count=count,
            online_more=count > LISTED,
            resumed=resumed,
            gap=gap,
            epoch=room.epoch,
            more=more,
            moderator=moderator,
            state=state,
        )
        self.outbox.send(member, wire_frame(welcome))
        self.presence.joined(room, member)

    def page(self, member: M, after: int) -> None:
        """The next page of a long resume."""
        if member.name is None:
            raise ProtocolError("not_joined", "join before you ask for history")
        config = self.config
        page = self.room_of(member).after(
            after, config.replay, config.replay_bytes, member.live_after
        )
        frame = history_frame(after, page.messages, page.more, page.gap)
        self.outbox.send(member, wire_frame(frame))

    def post(self, member: M, name: str, avatar: str, text: str) -> None:
        """Rate-limit, then store; the broadcast follows the commit."""
        bucket = member.bucket
        assert bucket is not None, "a member posts only after join or open"
        room = self.room_of(member)
        self.moderation.may_post(member, room, name)
        now = self.monotonic()
        shared = self._address_bucket(member.address, now)
        # Both limits are checked before either is spent.
        wait = max(bucket.wait(now), shared.wait(now) if shared is not None else 0.0)
        if wait > 0:
            raise ProtocolError(
                "rate_limited", f"too many messages; wait {wait:.1f} s", retry_after=wait
            )
        bucket.take(now)
        if shared is not None:
            shared.take(now)
        now_ms = self.wall_ms()
        message = room.create(name, avatar, text, now_ms, member.moderator)
        cut = self.config.retention.cut(message.id, now_ms)
        self.history.append(Entry(room.name, message, member, cut))

    def _address_bucket(self, address: str, now: float) -> TokenBucket | None:
        """The shared bucket of a client address (none for a member without one)."""
        if not address:
            return None
        buckets = self.address_buckets
        bucket = buckets.get(address)
        if bucket is None:
            if len(buckets) >= 4096:
                # Forget addresses whose bucket is full again: they lose nothing.
                for key in [k for k, b in buckets.items() if b.full(now)]:
                    del buckets[key]
            limits = self.config.limits
            bucket = buckets[address] = TokenBucket(
                self.config.rate_per_address, limits.rate_window, now
            )
        return bucket

    # What the history reports (the engine is its listener).

    def committed(self, batch: list[Entry]) -> None:
        """Messages are durable: add them to their room's history, broadcast them."""
        for entry in batch:
            room = self.rooms[entry.room]
            room.append(entry.message)
            room.trim(entry.cut)
            self.stats.messages[entry.room] += 1
            self.broadcast(room, entry.message)

    def failed(self, batch: list[Entry]) -> None:
        """Messages could not be stored: tell each sender, broadcast nothing."""
        error = wire_frame(error_frame(UNAVAILABLE))
        senders: list[Any] = [entry.sender for entry in batch if isinstance(entry.sender, Member)]
        self.stats.errors[UNAVAILABLE.code] += len(senders)
        self.outbox.broadcast(senders, error)

    def broadcast(self, room: Room[M], message: Message) -> None:
        """Send a stored message to everyone in its room, each dialect encoded once."""
        for dialect, audience in room.audiences.items():
            if audience:
                self.outbox.broadcast(audience, dialect.message_frame(message))

    # What the I/O layer reports.

    def online(self) -> dict[str, int]:
        """Members online per room."""
        return {name: len(room.members) for name, room in self.rooms.items()}
