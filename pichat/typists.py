"""Who is typing, sans I/O: throttle a member's ``typing`` frames and relay them.

A typing indicator is worth little and could cost a lot: a page sends a frame
while its person types, and every member of the room would get each one. So the
rules keep the cost bounded whatever a client sends:

- at most one frame per member per :data:`TYPING_INTERVAL` is relayed; extra
  frames are dropped without an answer (a page that types fast is not wrong);
- the relayed frame is encoded once for the whole room and queued with the
  room's other frames, so each member gets at most one frame per typist per
  interval, written in the same system call as whatever else is due that turn;
- nothing is stored, and only ``pichat.v1`` members (the typist's own dialect)
  hear it: the seed tutorial's ``echo-protocol`` clients would show it as text;
- a member who may not post (muted, or a locked room for non-moderators) is not
  shown typing either.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import ProtocolError
from .protocol import Frame, dumps, wire_frame

if TYPE_CHECKING:
    from .chat import Chat
    from .member import Member

__all__ = ["TYPING_INTERVAL", "relay_typing", "typing_frame"]

#: Seconds between two typing frames of one member that are relayed.
TYPING_INTERVAL = 3.0


def typing_frame(name: str) -> Frame:
    """``{"type": "typing", "name": ...}``: someone in the room is typing."""
    return wire_frame(dumps({"type": "typing", "name": name}))


def relay_typing(chat: Chat[Any], member: Member) -> None:
    """A ``typing`` frame from ``member``: relay it to the room, or drop it.

    Raises:
        ProtocolError: ``not_joined`` before the member joined.
    """
    name = member.name
    if name is None:
        raise ProtocolError("not_joined", "join before you send typing")
    now = chat.monotonic()
    if now - member.typed_at < TYPING_INTERVAL:
        return  # one every interval is enough for the indicator
    room = chat.room_of(member)
    if not chat.moderation.may_speak(member, room, name):
        return
    member.typed_at = now
    audience = room.audiences.get(member.dialect, {})
    chat.outbox.broadcast((other for other in audience if other is not member), typing_frame(name))
    if chat.roster is not None:
        chat.roster.typing(room.name, name)  # the other daemons' members too
