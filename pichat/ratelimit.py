"""Rate limiting, sans I/O: a token bucket per client, a throttle per log line.

A bucket holds ``rate_messages`` tokens and refills them evenly over
``rate_window`` seconds, so a client may burst a full window's worth and then
continue at the average rate. The caller passes ``now`` so tests need no clock.
"""

from __future__ import annotations

__all__ = ["LogThrottle", "TokenBucket"]


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

    def wait(self, now: float) -> float:
        """Seconds until a token is available (0.0: now), spending none."""
        rate = self.capacity / self.window
        tokens = min(self.capacity, self.tokens + (now - self.updated) * rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / rate

    def full(self, now: float) -> bool:
        """Whether the bucket has refilled completely (forgetting it loses nothing)."""
        rate = self.capacity / self.window
        return self.tokens + (now - self.updated) * rate >= self.capacity

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


class LogThrottle:
    """Lets a repeated log line through at most once per ``period`` seconds.

    Refusals (a foreign Origin, an unknown Host) are decided by outsiders: one
    line each would let anyone flood the journal. The line that gets through
    says how many were held back since the last one.
    """

    __slots__ = ("period", "_next", "_held")

    def __init__(self, period: float = 60.0) -> None:
        self.period = period
        self._next = float("-inf")
        self._held = 0

    def allow(self, now: float) -> int | None:
        """``None`` to hold this line back, else how many were held back before it."""
        if now < self._next:
            self._held += 1
            return None
        held, self._held = self._held, 0
        self._next = now + self.period
        return held
