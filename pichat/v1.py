"""The ``pichat.v1`` dialect: join first, then say; JSON objects with a ``type``.

Kept apart from the engine (:mod:`.chat`) as the tutorial's dialect is
(:mod:`.legacy`): the engine dispatches to a member's dialect and never asks
which one it is, so a dialect is only parsing and encoding.
"""

from __future__ import annotations

from typing import Any

from .chat import Chat
from .moderation import MODERATION_TYPES
from .presence import parse_online
from .protocol import (
    SUBPROTOCOL,
    Frame,
    HistoryRequest,
    Join,
    Message,
    ProtocolError,
    load_object,
    parse_object,
)
from .typists import relay_typing

__all__ = ["V1", "PichatV1"]


class PichatV1:
    """``pichat.v1``: join first, then say; JSON objects with a ``type``."""

    subprotocol = SUBPROTOCOL
    joins = True

    def opened(self, chat: Chat[Any], member: Any) -> None:
        """Nothing until the client joins."""

    def received(self, chat: Chat[Any], member: Any, text: str) -> None:
        """``join``, ``say``, ``history``, ``typing``, ``online``; moderation frames elsewhere."""
        frame = load_object(text)
        kind = frame.get("type")
        if kind in MODERATION_TYPES:
            chat.moderation.received(member, kind, frame)
            return
        if kind == "typing":
            relay_typing(chat, member)
            return
        if kind == "online":
            after = parse_online(frame)
            if member.name is None:
                raise ProtocolError("not_joined", "join before you ask who is online")
            chat.presence.page(chat.room_of(member), member, after)
            return
        command = parse_object(frame, chat.config.limits)
        if isinstance(command, Join):
            chat.join(member, command)
        elif isinstance(command, HistoryRequest):
            chat.page(member, command.after)
        elif member.name is None:
            raise ProtocolError("not_joined", "join before you say anything")
        else:
            chat.post(member, member.name, member.avatar, command.text)

    def message_frame(self, message: Message) -> Frame:
        """The message's ``pichat.v1`` frame."""
        return message.v1_frame()

    def __repr__(self) -> str:
        return self.subprotocol


V1 = PichatV1()
