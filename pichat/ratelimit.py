"""Per-client message rate limiting, sans I/O: a token bucket fed the current time.

A bucket holds ``rate_messages`` tokens and refills them evenly over
``rate_window`` seconds, so a client may burst a full window's worth and then
continue at the average rate. The caller passes ``now`` so tests need no clock.
"""

from __future__ import annotations

__all__ = ["TokenBucket"]


class TokenBucket:
    """``capacity`` tokens, refilled at ``capacity / window`` tokens per second."""

    __slots__ = ("capacity", "window", "tokens", "updated")

    def __init__(self, capacity: int, window: float, now: float) -> None:
        self.capacity = capacity
        self.window = window
        self.tokens = float(capacity)
        self.updated = now

    def take(self, now: float) -> float:
        """Spend one token.

        Returns:
            0.0 when allowed, else the seconds until a token is available.
        """
        rate = self.capacity / self.window
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / rate

    def reconfigure(self, capacity: int, window: float, now: float) -> None:
        """Apply new limits (on reload) without refunding or forgiving a burst.

        Time up to ``now`` refills at the old rate; only later time at the new one.
        """
        rate = self.capacity / self.window
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * rate)
        self.updated = now
        self.capacity = capacity
        self.window = window
        self.tokens = min(self.tokens, float(capacity))
