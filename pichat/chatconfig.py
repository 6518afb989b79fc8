"""What the chat engine takes from the configuration, and what it counts.

Kept apart from :mod:`.chat` so the engine's module holds the rules only.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import TYPE_CHECKING

from .passwords import Moderators, parse_hash
from .protocol import Limits
from .retention import Retention

if TYPE_CHECKING:
    from .settings import Settings

__all__ = ["ChatConfig", "ChatStats"]


@dataclasses.dataclass(frozen=True, slots=True)
class ChatConfig:
    """What the engine needs from the configuration."""

    limits: Limits = Limits()
    retention: Retention = Retention()
    #: Messages a fresh join gets, and the most one page of a resume carries.
    replay: int = 100
    #: Bytes of messages one welcome or history page carries at most.
    replay_bytes: int = 256 * 1024
    moderators: Moderators = dataclasses.field(default_factory=Moderators)
    #: Messages all connections of one client address may send per rate window.
    rate_per_address: int = 30

    @classmethod
    def from_settings(cls, settings: Settings) -> ChatConfig:
        """The engine's part of the settings."""
        return cls(
            limits=Limits(
                text=settings.max_message_length,
                name=settings.max_name_length,
                rate_messages=settings.rate_messages,
                rate_window=settings.rate_window,
            ),
            retention=Retention(settings.history_max_messages, settings.history_max_age_days),
            replay=settings.history_replay,
            replay_bytes=settings.history_replay_bytes,
            # Never below one connection's own rate: one person, one connection.
            rate_per_address=max(settings.rate_messages_per_ip, settings.rate_messages),
            moderators=Moderators.of(
                (m.name, parse_hash(m.password_hash)) for m in settings.moderators
            ),
        )


@dataclasses.dataclass(slots=True)
class ChatStats:
    """What the engine counts for monitoring: once per message or event, never per delivery."""

    #: Messages committed, per room.
    messages: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    #: Error frames sent, per code.
    errors: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    #: Joins with a cursor, per outcome: ``resumed``, ``gap``, ``epoch_change``.
    resumes: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
