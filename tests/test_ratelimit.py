"""The per-client token bucket, fed explicit times."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pichat.ratelimit import TokenBucket

RELAXED = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def drain(bucket: TokenBucket, now: float) -> int:
    """Take tokens at ``now`` until refused; returns how many were allowed."""
    allowed = 0
    while bucket.take(now) == 0.0:
        allowed += 1
        assert allowed <= 10_000, "the bucket never refuses"
    return allowed


def test_full_bucket_allows_a_burst_of_capacity() -> None:
    """A new bucket allows exactly capacity messages at once, then refuses."""
    bucket = TokenBucket(10, 10.0, now=0.0)
    assert drain(bucket, 0.0) == 10
    assert bucket.take(0.0) > 0


def test_refill_at_capacity_per_window() -> None:
    """Tokens come back at capacity/window per second."""
    bucket = TokenBucket(10, 10.0, now=0.0)
    drain(bucket, 0.0)
    assert bucket.take(0.5) > 0
    assert bucket.take(1.0) == 0.0
    assert bucket.take(1.0) > 0
    assert drain(bucket, 4.0) == 3


def test_idle_bucket_holds_at_most_capacity() -> None:
    """However long a client is idle, the next burst is at most capacity."""
    bucket = TokenBucket(3, 1.0, now=0.0)
    drain(bucket, 0.0)
    assert drain(bucket, 1_000_000.0) == 3


def test_retry_after_is_time_until_next_token() -> None:
    """A refused take returns the seconds until one token is back, and spends nothing."""
    bucket = TokenBucket(10, 10.0, now=0.0)
    drain(bucket, 0.0)
    assert bucket.take(0.0) == pytest.approx(1.0)
    assert bucket.take(0.25) == pytest.approx(0.75)
    assert bucket.take(0.25) == pytest.approx(0.75)
    assert TokenBucket(2, 1.0, now=0.0).take(0.0) == 0.0
    slow = TokenBucket(1, 60.0, now=0.0)
    slow.take(0.0)
    assert slow.take(15.0) == pytest.approx(45.0)


def test_reconfigure_lower_capacity_clips_tokens() -> None:
    """Lowering the capacity removes tokens above the new capacity."""
    bucket = TokenBucket(10, 10.0, now=0.0)
    bucket.reconfigure(2, 10.0, now=0.0)
    assert drain(bucket, 0.0) == 2


def test_reconfigure_does_not_refund() -> None:
    """Raising the capacity does not give back tokens already spent."""
    bucket = TokenBucket(2, 2.0, now=0.0)
    drain(bucket, 0.0)
    bucket.reconfigure(10, 10.0, now=0.0)
    assert bucket.take(0.0) > 0


def test_reconfigure_applies_new_rate() -> None:
    """After a reconfigure tokens come back at the new rate and up to the new capacity."""
    bucket = TokenBucket(2, 2.0, now=0.0)
    drain(bucket, 0.0)
    bucket.reconfigure(4, 1.0, now=0.0)
    assert bucket.take(0.25) == 0.0
    assert bucket.take(0.25) == pytest.approx(0.25)
    assert drain(bucket, 100.0) == 4


def test_reconfigure_credits_past_time_at_the_old_rate() -> None:
    """Time before a reconfigure refills at the old rate, not the new, faster one."""
    bucket = TokenBucket(10, 10.0, now=0.0)
    drain(bucket, 0.0)
    bucket.reconfigure(100, 1.0, now=5.0)  # 5 s at 1 token/s earned 5 tokens
    assert drain(bucket, 5.0) == 5


@RELAXED
@given(
    st.integers(min_value=1, max_value=50),
    st.floats(min_value=0.01, max_value=1000.0),
    st.lists(st.floats(min_value=0.0, max_value=100.0), max_size=60),
)
def test_allowed_never_exceeds_burst_plus_rate(
    capacity: int, window: float, gaps: list[float]
) -> None:
    """Over any time span, at most capacity plus rate times the span is allowed."""
    bucket = TokenBucket(capacity, window, now=0.0)
    now = 0.0
    allowed = 0
    for gap in gaps:
        now += gap
        if bucket.take(now) == 0.0:
            allowed += 1
        assert allowed <= capacity + now * capacity / window + 1e-9


@RELAXED
@given(
    st.integers(min_value=1, max_value=50),
    st.floats(min_value=0.01, max_value=1000.0),
    st.lists(st.floats(min_value=0.0, max_value=100.0), max_size=30),
)
def test_waiting_retry_after_is_enough(capacity: int, window: float, gaps: list[float]) -> None:
    """A client refused with retry_after is let through once that time has passed."""
    bucket = TokenBucket(capacity, window, now=0.0)
    now = 0.0
    for gap in gaps:
        now += gap
        retry_after = bucket.take(now)
        if retry_after > 0:
            # 1 ns of slack for float rounding; error frames round up to the millisecond.
            now += retry_after + 1e-9
            assert bucket.take(now) == 0.0
