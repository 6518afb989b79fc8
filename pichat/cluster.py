"""Several daemons, one set of rooms: the Redis parts wired to one daemon's engine.

With ``redis_url`` set, the daemon's history is :class:`~.redis_history.RedisHistory`,
its deliveries come from :class:`~.redis_bus.RedisBus`, its presence from
:class:`~.redis_presence.RedisPresence`, and every moderation action is published
so that every daemon applies it (this module). The engine itself is unchanged
but for the narrow hooks ``Chat.roster`` and ``Moderation.on_action``.

The daemon keeps no SQLite archive of shared rooms: Redis (with AOF) is the one
history, so there is never a second copy to disagree with it or to restore by
mistake; back up Redis instead (docs/scale-out.md).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from .moderation import BAN_CODE, KICK_CODE
from .protocol import dumps, wire_frame
from .redis_bus import RedisBus
from .redis_history import RedisHistory
from .redis_link import RedisLink
from .redis_presence import RedisPresence
from .redis_scripts import CONTROL
from .retention import Retention
from .rules import rules_from_json
from .validation import name_key

if TYPE_CHECKING:
    from .chat import Chat
    from .room import Room
    from .settings import Settings

__all__ = ["Cluster"]

logger = logging.getLogger(__name__)

#: Actions whose effect lives in the shared rules or bans (read again when told).
RULE_ACTIONS = frozenset({"delete", "clear", "mute", "lock", "slow"})
BAN_ACTIONS = frozenset({"ban", "unban"})


def _short(reason: str) -> str:
    """At most 123 bytes of UTF-8: a close frame's reason."""
    return reason.encode()[:123].decode(errors="ignore")


class Cluster:
    """The Redis side of one daemon.

    Args:
        settings: the validated configuration (``redis_url`` set).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.link = RedisLink(settings.redis_url)
        self._retention = Retention(settings.history_max_messages, settings.history_max_age_days)
        self.history = RedisHistory(self.link, lambda: self._retention)
        self.chat: Chat[Any] | None = None
        self.presence: RedisPresence | None = None
        self.bus: RedisBus | None = None

    async def connect(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for Redis to answer; whether it did."""
        deadline = time.monotonic() + timeout
        delay = 0.1
        while not await self.link.ping():
            if time.monotonic() + delay > deadline:
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
        return True

    def attach(self, chat: Chat[Any]) -> None:
        """Hook the engine up: presence, moderation, retention, the subscriber."""
        self.chat = chat
        self.history.retention = lambda: chat.config.retention
        self.presence = RedisPresence(
            self.link, self.history, chat, self.settings.redis_presence_ttl
        )
        chat.roster = self.presence
        chat.moderation.on_action = self._acted
        self.bus = RedisBus(self.link, self.history, chat, self)

    async def load_moderation(self) -> None:
        """The shared bans and rules (at start; a Redis down now is read again later)."""
        assert self.chat is not None
        try:
            await self.chat.moderation.load()
        except (RedisError, OSError) as exc:
            self.link.failed(exc)

    def start(self) -> None:
        """Start delivering (once the rooms are loaded)."""
        assert self.bus is not None
        self.bus.start()

    async def close(self) -> None:
        """Stop the subscriber, remove this daemon's members, drain the writes."""
        if self.bus is not None:
            await self.bus.stop()
        if self.presence is not None and self.link.up:
            await self.presence.close()
        await self.history.close()
        await self.link.close()

    # The bus's Peer.

    async def beat(self, force: bool) -> None:
        """Presence work; after a reconnect the shared bans and rules are read again too."""
        assert self.presence is not None and self.chat is not None
        if force:
            await self._reload_bans()
            await self._reload_rules()
        await self.presence.beat(force)

    def room_reset(self, room: str) -> None:
        """A room started over."""
        assert self.presence is not None
        self.presence.room_reset(room)

    async def control(self, payload: dict[str, Any]) -> None:
        """A presence or moderation message from another daemon."""
        assert self.presence is not None
        if self.presence.control(payload):
            return
        if payload.get("t") == "act":
            await self._apply(payload)

    # Moderation across daemons.

    def _acted(self, room: Room[Any], kind: str, done: dict[str, Any]) -> None:
        """Publish an action after the bans and rules it saved (same write queue)."""
        payload = {"d": self.link.daemon, "t": "act", "room": room.name, "kind": kind}
        self.history.publish(CONTROL, {**payload, "done": done, "through": room.stored_id})

    async def _reload_bans(self) -> None:
        assert self.chat is not None
        from .bans import Bans

        self.chat.moderation.bans = Bans(await self.history.load_bans())

    async def _reload_rules(self) -> None:
        assert self.chat is not None
        moderation = self.chat.moderation
        rules = rules_from_json(await self.history.load_rules())
        for name, room_rules in rules.items():
            old = moderation.rules.get(name)
            if old is not None:
                room_rules.last_post = old.last_post  # slow mode is per daemon
        moderation.rules = rules

    async def _apply(self, payload: dict[str, Any]) -> None:
        """Do here what a moderator did on another daemon."""
        chat = self.chat
        assert chat is not None
        room = chat.rooms.get(str(payload.get("room")))
        kind, done = payload.get("kind"), payload.get("done")
        if room is None or not isinstance(done, dict):
            return
        if kind in BAN_ACTIONS:
            await self._reload_bans()
        if kind in RULE_ACTIONS:
            await self._reload_rules()
        if kind == "delete" and isinstance(done.get("id"), int):
            room.remove(done["id"])
            self._broadcast(room, {"type": "deleted", "id": done["id"]})
        elif kind == "clear":
            through = int(payload.get("through") or 0)
            while room.history and room.history[0].id <= through:
                room.history.popleft()
            self._broadcast(room, {"type": "cleared"})
        elif kind == "kick":
            reason = str(done.get("reason") or "removed by a moderator")
            for target in room.named(str(done.get("name", ""))):
                chat.remove(target, KICK_CODE, _short(reason))
        elif kind == "ban":
            self._ban_here(room, str(done.get("name", "")), str(done.get("reason") or ""))
        elif kind in ("lock", "slow"):
            state = chat.moderation.room_rules(room).state()
            self._broadcast(room, {"type": "room", **state})

    def _ban_here(self, room: Room[Any], name: str, reason: str) -> None:
        """A ban: this daemon's members of that name are banned by address too, then out."""
        chat = self.chat
        assert chat is not None
        moderation = chat.moderation
        now_ms = chat.wall_ms()
        ban = moderation.bans.name(name_key(name), now_ms)
        targets = room.named(name)
        if ban is not None:
            fresh = {t.address for t in targets if t.address} - {
                row.address for row in moderation.bans.rows
            }
            if fresh:
                moderation.bans.add(dataclasses.replace(ban, address=a) for a in sorted(fresh))
                self.history.save_bans(moderation.bans.rows)
        close = _short(reason or "banned by a moderator")
        for target in targets:
            chat.remove(target, BAN_CODE, close)
        for other in list(chat.connections):
            if other.address and moderation.banned_address(other.address) is not None:
                chat.remove(other, BAN_CODE, close)

    def _broadcast(self, room: Room[Any], frame: dict[str, Any]) -> None:
        assert self.chat is not None
        self.chat.outbox.broadcast(room.members, wire_frame(dumps(frame)))
