"""The subscriber: every room's messages delivered in id order, exactly once, on every daemon.

One task owns the subscription and does everything that must not interleave
with a delivery, one thing at a time:

- A published message whose id is the room's next (``stored_id + 1``) is
  delivered (the engine's ``committed``). One further ahead means this daemon
  missed some (a blip of its connection): the missing range is read from the
  stream with ``XRANGE`` and delivered first. One at or below ``stored_id`` was
  delivered already (a fill overtook it) and is dropped. So no client on this
  daemon misses or repeats a message, whatever the connection did.
- Once a second (and right after every reconnect) every room's epoch and
  counter are read in one ``MGET``: a counter ahead of ``stored_id`` is filled
  (a message published while the subscription was down, or the last of a burst
  whose ``PUBLISH`` was lost); an epoch that changed (a flushed Redis, a restore)
  or a counter behind ``stored_id`` (a Redis that lost its last writes) starts
  the room over: it is reloaded and its connections are closed with 1012, so
  their pages reconnect and get a fresh welcome (``gap``, the new epoch).
- Control messages (presence, moderation) and the presence heartbeat run here
  too, through the :class:`Peer` given.

A failure closes the subscription; it is reopened with exponential backoff
(0.1 s to 5 s), and the resync above makes up for whatever was missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import TYPE_CHECKING, Any, Protocol

from redis.exceptions import RedisError

from .history import Entry
from .redis_link import COMMAND_TIMEOUT
from .redis_scripts import CONTROL, RoomKeys, message_from_payload, parse_json, stream_id
from .room import Room
from .store import new_epoch

if TYPE_CHECKING:
    from .chat import Chat
    from .redis_history import RedisHistory
    from .redis_link import RedisLink

__all__ = ["RESTART_CODE", "RedisBus"]

logger = logging.getLogger(__name__)

#: Close code for the connections of a room whose history started over (Service Restart).
RESTART_CODE = 1012
#: How often rooms are checked against Redis (epoch, counter), in seconds.
SYNC_PERIOD = 1.0
#: Messages read per XRANGE when filling a gap.
FILL_BATCH = 500
BACKOFF_FIRST, BACKOFF_MAX = 0.1, 5.0


class Peer(Protocol):
    """What the bus calls besides delivering: presence and moderation."""

    async def control(self, payload: dict[str, Any]) -> None:
        """A control message from another daemon."""

    async def beat(self, force: bool) -> None:
        """The periodic presence work (heartbeat, expiry, resync); ``force`` after a reconnect."""

    def room_reset(self, room: str) -> None:
        """A room started over (new epoch): forget what is known of its presence."""


class RedisBus:
    """The subscriber task of one daemon.

    Args:
        link: the Redis client and its state.
        history: the Redis history (for reloading a room that starts over).
        chat: the engine whose rooms are followed and fed.
        peer: presence and moderation.
    """

    def __init__(self, link: RedisLink, history: RedisHistory, chat: Chat[Any], peer: Peer) -> None:
        self.link = link
        self.history = history
        self.chat = chat
        self.peer = peer
        self._channels: dict[str, str] = {}  # channel -> room
        self._task: asyncio.Task[None] | None = None
        #: Set once the first session has subscribed and resynced (tests, startup).
        self.synced = asyncio.Event()
        self._stopping = asyncio.Event()

    def start(self) -> None:
        """Start the subscriber task."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="pichat-redis-bus")

    async def stop(self) -> None:
        """Stop the subscriber task: told, woken, and cancelled only as a last resort.

        Not cancelled first: redis-py's pub/sub read can swallow a cancellation
        and go on waiting. A message on the control channel wakes the read, the
        loop sees the flag and ends.
        """
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping.set()
        if self.link.up:
            try:
                await self.link.client.publish(CONTROL, json.dumps({"d": self.link.daemon}))
            except (RedisError, OSError):
                pass
        done, _ = await asyncio.wait({task}, timeout=SYNC_PERIOD + 2 * COMMAND_TIMEOUT)
        if not done:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        backoff = BACKOFF_FIRST
        while not self._stopping.is_set():
            pubsub = self.link.client.pubsub(ignore_subscribe_messages=True)
            try:
                await self._session(pubsub)
            except (RedisError, OSError) as exc:
                self.link.failed(exc)
            finally:
                try:
                    await pubsub.aclose()
                except (RedisError, OSError):
                    pass
            if self.link.up:
                backoff = BACKOFF_FIRST  # the session worked for a while
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def _session(self, pubsub: Any) -> None:
        self._channels = {}
        await pubsub.subscribe(CONTROL)
        # Subscribe before reading the rooms: whatever is published from now on
        # arrives, and the sync fills whatever came before.
        await self._follow(pubsub)
        await self._sync()
        self.link.ok()
        await self.peer.beat(True)
        self.synced.set()
        next_sync = time.monotonic() + SYNC_PERIOD
        while not self._stopping.is_set():
            if len(self._channels) != len(self.chat.rooms):
                await self._follow(pubsub)
                await self._sync()
            message = await pubsub.get_message(timeout=SYNC_PERIOD)
            if message is not None and message.get("type") == "message":
                await self._received(str(message["channel"]), str(message["data"]))
            if time.monotonic() >= next_sync:
                await self._sync()
                self.link.ok()
                await self.peer.beat(False)
                next_sync = time.monotonic() + SYNC_PERIOD

    async def _follow(self, pubsub: Any) -> None:
        """Subscribe to the channel of every room loaded (rooms come with a reload)."""
        new = {RoomKeys(name).channel: name for name in self.chat.rooms}
        fresh = [channel for channel in new if channel not in self._channels]
        if fresh:
            await pubsub.subscribe(*fresh)
        self._channels = new

    async def _received(self, channel: str, data: str) -> None:
        payload = parse_json(data)
        if not isinstance(payload, dict):
            logger.warning("redis: ignoring a malformed payload on %s", channel)
            return
        if channel == CONTROL:
            if payload.get("d") != self.link.daemon:
                try:
                    await self.peer.control(payload)
                except (KeyError, TypeError, ValueError) as exc:
                    logger.warning("redis: ignoring a malformed control message: %r", exc)
            return
        name = self._channels.get(channel)
        room = self.chat.rooms.get(name) if name is not None else None
        if room is None:
            return
        if payload.get("epoch") != room.epoch:
            await self._sync()  # the epoch changed: the sync starts the room over
            return
        try:
            message = message_from_payload(payload)
        except (KeyError, TypeError, ValueError):
            # Not one of ours: the stream is the authority, the next sync reads it.
            logger.warning("redis: ignoring a malformed message on %s", channel)
            return
        message_id = message.id
        if message_id <= room.stored_id:
            return  # a fill delivered it already
        if message_id > room.stored_id + 1:
            await self._fill(room, message_id - 1)
        self._deliver(room, message)

    async def _sync(self) -> None:
        """Check every room's epoch and counter against Redis; fill or start over."""
        names = list(self.chat.rooms)
        if not names:
            return
        keys = [key for name in names for key in (RoomKeys(name).epoch, RoomKeys(name).counter)]
        values = await self.link.client.mget(keys)
        for index, name in enumerate(names):
            epoch, counter = values[2 * index], int(values[2 * index + 1] or 0)
            room = self.chat.rooms[name]
            if epoch is None:
                # Flushed: the first daemon to notice names the new history.
                await self.link.client.set(RoomKeys(name).epoch, new_epoch(), nx=True)
                await self._reset(name, "its epoch is gone from redis (flushed?)")
            elif epoch != room.epoch:
                await self._reset(name, "redis has another epoch (flushed or restored)")
            elif counter < room.stored_id:
                # Redis lost writes this daemon delivered (a crash within the last
                # fsync): the ids would be given again, so this history ends here.
                await self.link.client.set(RoomKeys(name).epoch, new_epoch())
                await self._reset(name, f"redis went back from id {room.stored_id} to {counter}")
            elif counter > room.stored_id:
                await self._fill(room, counter)

    async def _fill(self, room: Room[Any], through: int) -> None:
        """Deliver what the stream holds after ``stored_id`` up to ``through``.

        Ids the stream no longer has were deleted by a moderator or dropped by
        retention: nobody delivers those, so the room moves past them.
        """
        stream = RoomKeys(room.name).stream
        while room.stored_id < through:
            entries = await self.link.client.xrange(
                stream, f"{room.stored_id + 1}-0", f"{through}-0", count=FILL_BATCH
            )
            for entry_id, fields in entries:
                payload = dict(fields, id=stream_id(entry_id))
                self._deliver(room, message_from_payload(payload))
            if len(entries) < FILL_BATCH:
                room.stored_id = max(room.stored_id, through)
                room.last_id = room.stored_id
                return

    def _deliver(self, room: Room[Any], message: Any) -> None:
        # Assigned, not max(): the engine's create() counts this daemon's posts
        # ahead of Redis (ids it never uses); Redis's id is the room's last one.
        room.last_id = message.id
        cut = self.chat.config.retention.cut(message.id, self.chat.wall_ms())
        self.chat.committed([Entry(room.name, message, None, cut)])

    async def _reset(self, name: str, why: str) -> None:
        """Start a room over from what Redis holds now; its connections reconnect."""
        chat = self.chat
        loaded = await self.history.load(name, chat.config.retention.max_messages)
        old = chat.rooms[name]
        new: Room[Any] = Room(name, loaded.epoch, loaded.messages, loaded.last_id)
        chat.rooms[name] = new
        self.peer.room_reset(name)
        closed = 0
        for member in list(chat.connections):
            if member.room is not old:
                continue
            if member.name is not None or any(member in a for a in old.audiences.values()):
                chat.remove(member, RESTART_CODE, "the history started over; reconnect")
                closed += 1
            else:
                member.room = new  # not joined yet: it joins the new history
        logger.warning(
            "room %s starts over (epoch %s): %s; %d connections closed",
            name,
            loaded.epoch,
            why,
            closed,
        )
