"""History retention policy, sans I/O: which messages a room keeps.

A room keeps at most ``max_messages`` and, when ``max_age_days`` is set, only
messages younger than that. The same policy prunes the in-memory history and
the SQLite table, so what a client can resume is exactly what is stored.
"""

from __future__ import annotations

import dataclasses

__all__ = ["Retention"]

_MS_PER_DAY = 86_400_000


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
