"""History retention policy, sans I/O: which messages a room keeps.

A room keeps at most ``max_messages`` and, when ``max_age_days`` is set, only
messages younger than that. :meth:`Retention.cut` is the one place that
decides; the room's memory and every history store apply the same :class:`Cut`,
so what a client can resume is exactly what is stored.
"""

from __future__ import annotations

import dataclasses

__all__ = ["Cut", "Retention"]

_MS_PER_DAY = 86_400_000


@dataclasses.dataclass(frozen=True, slots=True)
class Cut:
    """Keep messages with ``id >= first_id`` and ``ms >= oldest_ms``."""

    first_id: int
    oldest_ms: int

    def keeps(self, message_id: int, ms: int) -> bool:
        """Whether a message survives this cut."""
        return message_id >= self.first_id and ms >= self.oldest_ms


@dataclasses.dataclass(frozen=True, slots=True)
class Retention:
    """Keep the last ``max_messages``; with ``max_age_days`` > 0, drop older ones."""

    max_messages: int = 1000
    max_age_days: float = 0.0

    def oldest_date_ms(self, now_ms: int) -> int | None:
        """Messages dated before this (epoch ms) are dropped; None when age is no limit."""
        if self.max_age_days <= 0:
            return None
        return now_ms - int(self.max_age_days * _MS_PER_DAY)

    def first_kept_id(self, last_id: int) -> int:
        """The smallest id kept by the count limit when the newest id is ``last_id``."""
        return max(1, last_id - self.max_messages + 1)

    def cut(self, last_id: int, now_ms: int) -> Cut:
        """What a room whose newest id is ``last_id`` keeps at ``now_ms``."""
        oldest = self.oldest_date_ms(now_ms)
        return Cut(self.first_kept_id(last_id), oldest if oldest is not None else -(2**63))
