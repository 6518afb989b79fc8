"""The seed tutorial's ``echo-protocol`` dialect, whole: parsing, history, escaped encoding.

pichat grew out of a blog tutorial whose jQuery page speaks this format and
inserts the fields into its HTML as raw strings. Its clients never join: on
connect they get the recent history as one JSON array of JSON-encoded strings,
then every message as an object, and what they send carries name, avatar and
text each time. So that those pages cannot be turned into an XSS vector, every
field is HTML-escaped in this dialect (and only here). Legacy clients receive
messages but are not online.
"""

from __future__ import annotations

import html
from typing import Any

from .chat import Chat
from .protocol import (
    Frame,
    Message,
    dumps,
    load_object,
    validate_avatar,
    validate_name,
    validate_text,
    wire_frame,
)

__all__ = ["LEGACY", "LEGACY_SUBPROTOCOL", "Legacy"]

LEGACY_SUBPROTOCOL = "echo-protocol"


def as_legacy(message: Message) -> dict[str, str]:
    """The message in the tutorial's shape, HTML-escaped for its raw insertion."""
    return {
        "name": html.escape(message.name),
        "avatar": html.escape(message.avatar),
        "message": html.escape(message.text),
        "date": message.date,
    }


def legacy_json(message: Message) -> bytes:
    """The ``echo-protocol`` payload of a message, encoded once."""
    return message.encoded(LEGACY_SUBPROTOCOL, lambda m: dumps(as_legacy(m)))


def history_frame(messages: list[Message]) -> bytes:
    """The tutorial's history: a JSON array of JSON-encoded message strings."""
    return dumps([legacy_json(m).decode() for m in messages])


def parse(data: str, chat: Chat[Any]) -> tuple[str, str, str]:
    """An ``echo-protocol`` frame ``{"name", "avatar", "message"}``, validated like join + say.

    Returns:
        ``(name, avatar, text)``.
    """
    limits = chat.config.limits
    frame = load_object(data)
    return (
        validate_name(frame.get("name"), limits.name),
        validate_avatar(frame.get("avatar")),
        validate_text(frame.get("message"), limits.text),
    )


class Legacy:
    """The :class:`~pichat.chat.Dialect` of the tutorial's page."""

    subprotocol = LEGACY_SUBPROTOCOL
    joins = False

    def opened(self, chat: Chat[Any], member: Any) -> None:
        """Listen to the room at once and get its recent history."""
        room = chat.room_of(member)
        member.bucket = chat.new_bucket()
        room.listen(member, self)
        config = chat.config
        recent = room.recent(config.replay, config.replay_bytes)
        chat.outbox.send(member, wire_frame(history_frame(recent)))

    def received(self, chat: Chat[Any], member: Any, text: str) -> None:
        """A message with its author's name and avatar."""
        name, avatar, body = parse(text, chat)
        chat.moderation.admit_legacy(chat.room_of(member), name)
        chat.post(member, name, avatar, body)

    def message_frame(self, message: Message) -> Frame:
        """The message's escaped ``echo-protocol`` frame."""
        return Frame(
            message.encoded(LEGACY_SUBPROTOCOL + "-frame", lambda m: wire_frame(legacy_json(m)))
        )

    def __repr__(self) -> str:
        return self.subprotocol


LEGACY = Legacy()
