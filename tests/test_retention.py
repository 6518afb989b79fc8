"""The history retention policy."""

from __future__ import annotations

import pytest

from pichat.retention import Cut, Retention

DAY_MS = 86_400_000


def test_defaults() -> None:
    """By default a room keeps 1000 messages and has no age limit."""
    assert Retention() == Retention(max_messages=1000, max_age_days=0.0)
    assert Retention().oldest_date_ms(10**12) is None


@pytest.mark.parametrize("days", [0, 0.0, -1.0])
def test_no_age_limit(days: float) -> None:
    """max_age_days of zero (or less) means messages never expire by age."""
    assert Retention(max_age_days=days).oldest_date_ms(5 * DAY_MS) is None


@pytest.mark.parametrize(
    ("days", "expected"),
    [
        (1.0, 9 * DAY_MS),
        (7, 3 * DAY_MS),
        (0.5, 9 * DAY_MS + DAY_MS // 2),
        (1 / 24, 10 * DAY_MS - 3_600_000),
    ],
)
def test_oldest_date_is_now_minus_age(days: float, expected: int) -> None:
    """With an age limit, the oldest date kept is now minus max_age_days, in epoch ms."""
    assert Retention(max_age_days=days).oldest_date_ms(10 * DAY_MS) == expected


@pytest.mark.parametrize(
    ("max_messages", "last_id", "expected"),
    [(3, 10, 8), (1, 10, 10), (1000, 10, 1), (3, 3, 1), (3, 0, 1), (10, 11, 2)],
)
def test_first_kept_id(max_messages: int, last_id: int, expected: int) -> None:
    """The count limit keeps ids from last_id - max_messages + 1, and never below 1."""
    assert Retention(max_messages=max_messages).first_kept_id(last_id) == expected


# Cuts.


def test_cut_without_age_limit_keeps_any_date() -> None:
    """Without an age limit the cut is by count only and keeps messages of any date."""
    cut = Retention(max_messages=3).cut(10, 5 * DAY_MS)
    assert cut.first_id == 8
    assert cut.keeps(8, -(2**62)) and cut.keeps(10, 0)
    assert not cut.keeps(7, 5 * DAY_MS)


def test_cut_with_age_limit() -> None:
    """With an age limit the cut keeps messages from now minus the age, boundary included."""
    cut = Retention(max_messages=100, max_age_days=1).cut(10, 10 * DAY_MS)
    assert cut == Cut(first_id=1, oldest_ms=9 * DAY_MS)
    assert cut.keeps(1, 9 * DAY_MS)
    assert not cut.keeps(1, 9 * DAY_MS - 1)


@pytest.mark.parametrize(
    ("message_id", "ms", "kept"),
    [(5, 100, True), (4, 100, False), (5, 99, False), (4, 99, False), (6, 101, True)],
)
def test_cut_keeps_only_what_passes_both_limits(message_id: int, ms: int, kept: bool) -> None:
    """A message survives a cut only when both its id and its date are at or above it."""
    assert Cut(first_id=5, oldest_ms=100).keeps(message_id, ms) is kept


def test_cut_of_an_empty_room_keeps_everything_from_id_one() -> None:
    """A room with no messages yet gets a cut that keeps every id."""
    assert Retention(max_messages=3).cut(0, 0).first_id == 1
