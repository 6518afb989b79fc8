"""The rotation of ``pichat backup --keep``: names of dated backups and which go."""

from __future__ import annotations

import datetime

import pytest

from pichat.rotation import leftovers, next_name, to_remove

NOW = datetime.datetime(2026, 12, 2, 3, 15, 42, tzinfo=datetime.UTC)


def test_a_backup_is_named_by_its_utc_time() -> None:
    """The name is the UTC time to the second, whatever the caller's zone."""
    assert next_name(NOW, []) == "pichat-20261202T031542Z.sqlite3"
    paris = NOW.astimezone(datetime.timezone(datetime.timedelta(hours=1)))
    assert next_name(paris, ["notes.txt"]) == "pichat-20261202T031542Z.sqlite3"


def test_two_backups_in_one_second_get_distinct_names() -> None:
    """A second backup within the same second is -2, a third -3: nothing is overwritten."""
    first = next_name(NOW, [])
    second = next_name(NOW, [first])
    assert second == "pichat-20261202T031542Z-2.sqlite3"
    assert next_name(NOW, [first, second]) == "pichat-20261202T031542Z-3.sqlite3"


def test_the_oldest_go_and_keep_remain() -> None:
    """With keep 3: the new one and the two newest before it stay, by the time in the names."""
    old = [f"pichat-202611{day:02d}T031500Z.sqlite3" for day in (28, 25, 30, 26, 29)]
    new = next_name(NOW, old)
    assert to_remove([*old, new], 3, new) == [
        "pichat-20261125T031500Z.sqlite3",
        "pichat-20261126T031500Z.sqlite3",
        "pichat-20261128T031500Z.sqlite3",
    ]


def test_suffixed_names_sort_after_their_second() -> None:
    """-2 is newer than the plain name of the same second, -10 newer than -9."""
    names = [
        "pichat-20261201T000000Z-10.sqlite3",
        "pichat-20261201T000000Z.sqlite3",
        "pichat-20261201T000000Z-9.sqlite3",
        "pichat-20261201T000000Z-2.sqlite3",
    ]
    new = "pichat-20261202T000000Z.sqlite3"
    assert to_remove([*names, new], 2, new) == [
        "pichat-20261201T000000Z.sqlite3",
        "pichat-20261201T000000Z-2.sqlite3",
        "pichat-20261201T000000Z-9.sqlite3",
    ]


def test_other_files_are_never_removed() -> None:
    """Only exact pichat-DATE.sqlite3 names count: copies by hand and partial files stay."""
    others = [
        "history.sqlite3",
        "pichat-before-upgrade.sqlite3",
        "pichat-20261101T000000Z.sqlite3.gz",
        ".pichat-20261101T000000Z.sqlite3.partial-42",
        "pichat-20261101T000000Z-0.sqlite3",
        "pichat-2026110T000000Z.sqlite3",
        "notes.txt",
    ]
    new = next_name(NOW, others)
    assert to_remove([*others, new], 1, new) == []


def test_the_new_backup_stays_even_when_the_clock_went_back() -> None:
    """A clock behind the last backup's: the new copy sorts first but is kept, keep 1 included."""
    future = ["pichat-20990101T000000Z.sqlite3", "pichat-20980101T000000Z.sqlite3"]
    new = next_name(NOW, future)
    assert to_remove([*future, new], 2, new) == ["pichat-20980101T000000Z.sqlite3"]
    assert to_remove([*future, new], 1, new) == sorted(future)


def test_keep_below_one_is_refused() -> None:
    """Keeping no backup would delete the one just made."""
    with pytest.raises(ValueError, match="at least 1"):
        to_remove([], 0, "pichat-20261202T031542Z.sqlite3")


def test_leftovers_are_the_partial_copies_of_dated_backups() -> None:
    """A cut-off backup's partial file is a leftover; others' files and backups are not."""
    names = [
        ".pichat-20261201T031500Z.sqlite3.partial-4242",
        ".pichat-20261201T031500Z-2.sqlite3.partial-7",
        ".history-by-hand.sqlite3.partial-4242",
        "pichat-20261201T031500Z.sqlite3",
        ".pichat-20261201T031500Z.sqlite3.partial-",
    ]
    assert leftovers(names) == [
        ".pichat-20261201T031500Z-2.sqlite3.partial-7",
        ".pichat-20261201T031500Z.sqlite3.partial-4242",
    ]
