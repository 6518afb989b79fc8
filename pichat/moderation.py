"""Moderation, sans I/O: who is a moderator, what their frames do, what holds others back.

The chat engine (:mod:`.chat`) hands every moderator frame here and asks here
before a join (reserved and banned names, passwords) and before a post (mute,
lock, slow mode). Like the engine, nothing here touches a socket or a file:
frames go out through the engine's outbox, deletions and bans through its
history, and the clocks are the engine's.

Every bad frame is refused with an error before anything changes: a frame is
parsed and its target found first, and only then acted on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .addresses import address_key, parse_address
from .bans import Ban, Bans
from .errors import ProtocolError
from .history import Deletion, Entry, LogEntry
from .password_guard import PasswordGuard, Verifier, verify_now
from .protocol import Frame, Join, dumps, wire_frame
from .rules import RoomRules, rules_from_json, rules_to_json
from .validation import has_control, name_key, validate_name, validate_text

if TYPE_CHECKING:
    from .chat import Chat, Member
    from .room import Room

__all__ = [
    "KICK_CODE",
    "BAN_CODE",
    "MODERATION_TYPES",
    "Moderation",
]

logger = logging.getLogger(__name__)

#: Close codes (4000-4999: private use) of a kicked and a banned connection.
KICK_CODE = 4001
BAN_CODE = 4003
#: The frame types only a moderator may send.
MODERATION_TYPES = frozenset(("delete", "clear", "kick", "ban", "unban", "mute", "lock", "slow"))
MAX_REASON_LENGTH = 200
MAX_BAN_MINUTES = 10 * 366 * 24 * 60
MAX_MUTE_MINUTES = 7 * 24 * 60
MAX_SLOW_SECONDS = 3600


def _reason(frame: dict[str, Any]) -> str:
    value = frame.get("reason", "")
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > MAX_REASON_LENGTH or has_control(value):
        raise ProtocolError(
            "bad_reason", f"reason must be text of at most {MAX_REASON_LENGTH} characters"
        )
    return value.strip()


def _whole(frame: dict[str, Any], key: str, default: int, high: int, code: str) -> int:
    value = frame.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= high:
        raise ProtocolError(code, f"{key} must be a whole number from 0 to {high}")
    return value


def _close_reason(text: str) -> str:
    """At most 123 bytes of UTF-8, the limit of a close frame's reason."""
    data = text.encode()[:123]
    return data.decode(errors="ignore")


def _frame(value: dict[str, Any]) -> Frame:
    return wire_frame(dumps(value))


class Moderation:
    """The moderation rules of one chat engine."""

    def __init__(self, chat: Chat[Any], verifier: Verifier = verify_now) -> None:
        self.chat = chat
        self.bans = Bans()
        self.passwords = PasswordGuard(verifier)
        #: Joins waiting for their password check: member -> its join.
        self.pending: dict[Member, Join] = {}
        self.rules: dict[str, RoomRules] = {}
        #: Called after each action with (room, kind, done): shared rooms publish it.
        self.on_action: Callable[[Room[Any], str, dict[str, Any]], None] | None = None

    def room_rules(self, room: Room[Any]) -> RoomRules:
        """The rules of a room (defaults until a moderator sets some)."""
        rules = self.rules.get(room.name)
        if rules is None:
            rules = self.rules[room.name] = RoomRules()
        return rules

    async def load(self) -> None:
        """Take the stored bans and room rules."""
        self.bans = Bans(await self.chat.history.load_bans())
        if self.bans.expire(self.chat.wall_ms()):
            self._save_bans()
        self.rules = rules_from_json(await self.chat.history.load_rules())
        logger.info("%d bans in force", len(self.bans.rows))
        for room, rules in self.rules.items():
            if rules.locked or rules.slow:
                logger.info("room %s: locked %s, slow mode %d s", room, rules.locked, rules.slow)

    def expire(self) -> None:
        """Forget ended mutes and stale slow-mode posts (called now and then)."""
        now_ms, now = self.chat.wall_ms(), self.chat.monotonic()
        if any([rules.expire(now_ms, now) for rules in self.rules.values()]):
            self._save_rules()

    def banned_address(self, address: str) -> Ban | None:
        """The ban on a client address (any form; compared by its key), if one holds."""
        return self.bans.address(address_key(address), self.chat.wall_ms())

    # Before a join and a post.

    def admit(
        self, member: Member, command: Join, enter: Callable[[Any, Join, bool], None]
    ) -> None:
        """May ``member`` join as ``command.name``? ``enter(member, command, moderator)`` if so.

        ``enter`` runs now, or, for a moderator's name, once the password check
        answers (off the event loop in the daemon); a later refusal is sent as
        an error frame then.

        Raises:
            ProtocolError: ``name_banned``, ``name_reserved``, or ``rate_limited``
                (too many wrong passwords from the address, or checks at once).
        """
        name, password = command.name, command.password
        if self.bans.name(name_key(name), self.chat.wall_ms()) is not None:
            raise ProtocolError("name_banned", "this name is banned from the chat")
        stored = self.chat.config.moderators.get(name)
        if stored is None:
            enter(member, command, False)
            return
        if password is None:
            raise ProtocolError("name_reserved", "this name is reserved; it needs its password")
        address = member.address or f"member-{id(member)}"

        def done(error: ProtocolError | None) -> None:
            if self.pending.pop(member, None) is None:
                return  # the connection closed while its password was checked
            try:
                if error is not None:
                    raise error
                enter(member, command, True)
            except ProtocolError as refusal:
                self.chat.refuse(member, refusal)

        self.pending[member] = command
        try:
            self.passwords.check(address, password, stored, self.chat.monotonic, done)
        except ProtocolError:
            del self.pending[member]
            raise

    def admit_legacy(self, room: Room[Any], name: str) -> None:
        """``echo-protocol`` cannot authenticate: moderators' and online names are refused."""
        roster = self.chat.roster
        elsewhere = roster is not None and roster.online_elsewhere(room.name, name)
        if self.chat.config.moderators.get(name) is not None or room.taken(name) or elsewhere:
            raise ProtocolError("name_reserved", "this name is reserved or taken")
        if self.bans.name(name_key(name), self.chat.wall_ms()) is not None:
            raise ProtocolError("name_banned", "this name is banned from the chat")

    def may_speak(self, member: Member, room: Room[Any], name: str) -> bool:
        """Whether a post would pass mute and lock now, without may_post's side effects."""
        rules = self.rules.get(room.name)
        if member.moderator or rules is None:
            return True
        now_ms = self.chat.wall_ms()
        keys = [key for key in (name_key(name), member.address) if key]
        return not rules.locked and all(rules.muted.get(key, 0) <= now_ms for key in keys)

    def may_post(self, member: Member, room: Room[Any], name: str) -> None:
        """Raise ``muted``, ``room_locked`` or ``rate_limited`` (slow mode); moderators pass."""
        if member.moderator:
            return
        rules = self.rules.get(room.name)
        if rules is None:
            return
        now, now_ms = self.chat.monotonic(), self.chat.wall_ms()
        for key in (name_key(name), member.address):
            until = rules.muted.get(key) if key else None
            if until is not None:
                if now_ms < until:
                    wait = (until - now_ms) / 1000
                    raise ProtocolError("muted", "a moderator muted you for now", retry_after=wait)
                del rules.muted[key]
        if rules.locked:
            raise ProtocolError("room_locked", "the room is locked: only moderators may post")
        if rules.slow:
            person = member.address or member
            last = rules.last_post.get(person)
            if last is not None and now - last < rules.slow:
                wait = rules.slow - (now - last)
                raise ProtocolError(
                    "rate_limited", f"slow mode: wait {wait:.1f} s", retry_after=wait
                )
            rules.last_post[person] = now

    # Moderator frames.

    def received(self, member: Member, kind: str, frame: dict[str, Any]) -> None:
        """A moderator frame; anyone else is told ``forbidden``."""
        if member.name is None:
            raise ProtocolError("not_joined", "join before you moderate")
        if not member.moderator:
            raise ProtocolError("forbidden", "only moderators may do that")
        done = self.act(member.name, self.chat.room_of(member), kind, frame)
        self.chat.outbox.send(member, _frame({"type": "done", "action": kind, **done}))

    def act(self, actor: str, room: Room[Any], kind: str, frame: dict[str, Any]) -> dict[str, Any]:
        """Do one moderation action for ``actor`` (a moderator, or ``pichat ctl``).

        Returns:
            what was done (the ``done`` frame's fields), also logged and kept in
            the moderation log.

        Raises:
            ProtocolError: for a bad frame; nothing has changed then.
        """
        if kind not in MODERATION_TYPES:
            raise ProtocolError("unknown_type", f"unknown action {kind[:40]!r}")
        done: dict[str, Any] = getattr(self, f"_{kind}")(actor, room, frame)
        self.log(actor, room, kind, done)
        if self.on_action is not None:
            self.on_action(room, kind, done)
        return done

    def announce(self, actor: str, room: Room[Any], text: object) -> dict[str, Any]:
        """A message from the room itself (``pichat ctl announce``), stored, then broadcast.

        Raises:
            ProtocolError: the text breaks the rules a ``say`` follows.
        """
        chat = self.chat
        text = validate_text(text, chat.config.limits.text)
        now_ms = chat.wall_ms()
        message = room.create(room.name, "", text, now_ms)
        message.announcement = True
        cut = chat.config.retention.cut(message.id, now_ms)
        chat.history.append(Entry(room.name, message, None, cut))
        done = {"id": message.id, "text": text}
        self.log(actor, room, "announce", done)
        return done

    def log(self, actor: str, room: Room[Any], kind: str, done: dict[str, Any]) -> None:
        """Record an action in the journal and in the moderation log."""
        detail = " ".join(f"{k}={v!r}" for k, v in done.items())
        logger.info("moderation: %s in %s by %s: %s", kind, room.name, actor, detail)
        self.chat.history.record(
            LogEntry(self.chat.wall_ms(), room.name, actor, kind, dumps(done).decode())
        )

    def _delete(self, actor: str, room: Room[Any], frame: dict[str, Any]) -> dict[str, Any]:
        message_id = frame.get("id")
        if not isinstance(message_id, int) or isinstance(message_id, bool):
            raise ProtocolError("bad_id", "id must be a message id")
        if room.remove(message_id) is None:
            raise ProtocolError("no_message", f"no message {message_id} in this room")
        self.chat.history.delete(Deletion(room.name, (message_id,)))
        self.room_rules(room).deleted.append(message_id)
        self._save_rules()
        self.chat.outbox.broadcast(room.members, _frame({"type": "deleted", "id": message_id}))
        return {"id": message_id}

    def _clear(self, actor: str, room: Room[Any], frame: dict[str, Any]) -> dict[str, Any]:
        count = room.clear()
        self.chat.history.delete(Deletion(room.name, through=room.stored_id))
        rules = self.room_rules(room)
        rules.cleared = room.stored_id
        rules.deleted.clear()  # a clear covers them
        self._save_rules()
        self.chat.outbox.broadcast(room.members, _frame({"type": "cleared"}))
        return {"count": count}

    def _targets(self, room: Room[Any], frame: dict[str, Any]) -> tuple[str, list[Member]]:
        name = validate_name(frame.get("name"), 1024)
        targets = room.named(name)
        if not targets:
            # With shared rooms the person may be on another daemon: the action
            # is published (on_action) and applied there.
            roster = self.chat.roster
            key = name_key(name)
            elsewhere = [
                moderator
                for other, _, moderator in (roster.others(room.name) if roster else [])
                if name_key(other) == key
            ]
            if not elsewhere:
                raise ProtocolError("no_member", f"nobody called {name[:40]!r} is online here")
            if any(elsewhere):
                raise ProtocolError("bad_target", "moderators cannot be kicked, banned or muted")
        if any(target in room.moderators for target in targets):
            raise ProtocolError("bad_target", "moderators cannot be kicked, banned or muted")
        return name, targets

    def _kick(self, actor: str, room: Room[Any], frame: dict[str, Any]) -> dict[str, Any]:
        name, targets = self._targets(room, frame)
        reason = _reason(frame)
        for target in targets:
            self.chat.remove(target, KICK_CODE, _close_reason(reason or "removed by a moderator"))
        return {"name": name, "reason": reason}

    def _ban(self, actor: str, room: Room[Any], frame: dict[str, Any]) -> dict[str, Any]:
        address = frame.get("address")
        if address is not None:  # pichat ctl: an address, whoever is behind it
            if not isinstance(address, str) or parse_address(address) is None:
                raise ProtocolError("bad_address", "address must be an IP address")
            name, key, label = "", "", address_key(address)
            targets: list[Member] = []
            addresses = [label]
        else:
            name, targets = self._targets(room, frame)
            key, label = name_key(name), name
            addresses = sorted({t.address for t in targets if t.address}) or [""]
        minutes = _whole(frame, "minutes", 60, MAX_BAN_MINUTES, "bad_minutes")
        reason = _reason(frame)
        now_ms = self.chat.wall_ms()
        until = now_ms + minutes * 60_000 if minutes else 0
        self.bans.add(
            Ban(address, key, until, reason, room.name, actor, now_ms, label)
            for address in addresses
        )
        self._save_bans()
        close = _close_reason(reason or "banned by a moderator")
        for target in targets:
            self.chat.remove(target, BAN_CODE, close)
        # Every other connection from a banned address goes too, in every room.
        for other in list(self.chat.connections):
            if other.address and other.address in addresses:
                self.chat.remove(other, BAN_CODE, close)
        return {"name": name or label, "minutes": minutes, "reason": reason}

    def _unban(self, actor: str, room: Room[Any], frame: dict[str, Any]) -> dict[str, Any]:
        address, name = frame.get("address"), frame.get("name")
        if address is not None:
            if not isinstance(address, str) or parse_address(address) is None:
                raise ProtocolError("bad_address", "address must be an IP address")
            lifted = self.bans.lift(address=address_key(address))
        else:
            lifted = self.bans.lift(name=name_key(validate_name(name, 1024)))
        if not lifted:
            raise ProtocolError("no_ban", "no ban matches")
        self._save_bans()
        return {"count": len(lifted)}

    def _mute(self, actor: str, room: Room[Any], frame: dict[str, Any]) -> dict[str, Any]:
        name, targets = self._targets(room, frame)
        minutes = _whole(frame, "minutes", 10, MAX_MUTE_MINUTES, "bad_minutes")
        rules = self.room_rules(room)
        keys = [name_key(name)] + [target.address for target in targets if target.address]
        for key in keys:
            if minutes:
                rules.muted[key] = self.chat.wall_ms() + minutes * 60_000
            else:
                rules.muted.pop(key, None)
        self._save_rules()
        return {"name": name, "minutes": minutes}

    def _lock(self, actor: str, room: Room[Any], frame: dict[str, Any]) -> dict[str, Any]:
        locked = frame.get("locked", True)
        if not isinstance(locked, bool):
            raise ProtocolError("bad_frame", "locked must be true or false")
        rules = self.room_rules(room)
        rules.locked = locked
        self._save_rules()
        self._announce(room, rules)
        return {"locked": locked}

    def _slow(self, actor: str, room: Room[Any], frame: dict[str, Any]) -> dict[str, Any]:
        seconds = _whole(frame, "seconds", 0, MAX_SLOW_SECONDS, "bad_seconds")
        rules = self.room_rules(room)
        rules.slow = seconds
        rules.last_post.clear()
        self._save_rules()
        self._announce(room, rules)
        return {"seconds": seconds}

    def _announce(self, room: Room[Any], rules: RoomRules) -> None:
        self.chat.outbox.broadcast(room.members, _frame({"type": "room", **rules.state()}))

    def _save_bans(self) -> None:
        self.chat.history.save_bans(self.bans.rows)

    def _save_rules(self) -> None:
        self.chat.history.save_rules(rules_to_json(self.rules))
