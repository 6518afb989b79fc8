"""What the engine knows of a connection, and the two interfaces around it.

:class:`Member` is one connection as the chat engine sees it; the I/O layer
subclasses it (:class:`pichat.outbox.Client`). :class:`Outbox` is where the
engine's frames go, :class:`Dialect` one subprotocol's way of speaking to it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from .protocol import Frame, Message
from .ratelimit import TokenBucket

if TYPE_CHECKING:
    from .chat import Chat
    from .room import Room
    from .sites import Site

__all__ = ["Dialect", "Member", "Outbox"]


class Member:
    """What the engine knows of one connection: its site, room, dialect and identity.

    The I/O layer subclasses it with the transport's side of the connection.
    """

    __slots__ = (
        "site",
        "dialect",
        "room",
        "name",
        "avatar",
        "bucket",
        "live_after",
        "moderator",
        "address",
        "joined_ms",
        "typed_at",
    )

    def __init__(self, site: Site, dialect: Dialect, address: str = "") -> None:
        self.site = site
        self.dialect = dialect
        self.room: Room[Any] | None = None
        #: Set by a successful ``join``; ``None`` until then.
        self.name: str | None = None
        self.avatar = ""
        self.bucket: TokenBucket | None = None
        #: The newest id committed when the member joined: everything after it
        #: reaches the member live, so history pages stop there.
        self.live_after = 0
        #: Joined with a moderator's name and password.
        self.moderator = False
        #: The client address's key (:func:`~.addresses.address_key`): what bans,
        #: mutes and the password limit count; never sent to any client.
        self.address = address
        #: When the member joined (epoch milliseconds; 0 until then).
        self.joined_ms = 0
        #: When the last ``typing`` frame was relayed (monotonic seconds).
        self.typed_at = -math.inf


M_contra = TypeVar("M_contra", bound="Member", contravariant=True)


class Outbox(Protocol[M_contra]):
    """Where the engine's answers go; the I/O layer writes them out."""

    def send(self, member: M_contra, frame: Frame) -> None:
        """Queue a frame for one member."""

    def broadcast(self, members: Iterable[M_contra], frame: Frame) -> None:
        """Queue one frame for many members (encoded once)."""

    def close(self, member: M_contra, code: int, reason: str) -> None:
        """Send what is queued, then close the connection with ``code``."""


class Dialect(Protocol):
    """One subprotocol's way of speaking to the engine."""

    #: The subprotocol name negotiated in the handshake.
    subprotocol: str
    #: Whether a connection must ``join`` (and so is closed by ``join_timeout``).
    joins: bool

    def opened(self, chat: Chat[Any], member: Any) -> None:
        """A connection in this dialect is open and placed in its room."""

    def received(self, chat: Chat[Any], member: Any, text: str) -> None:
        """A text frame arrived; raises :class:`ProtocolError` for a bad one."""

    def message_frame(self, message: Message) -> Frame:
        """The wire frame of a stored message (cached on the message)."""
