"""Room state without I/O: unique names, online order, ids, retention cuts, replay and pages."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pichat.protocol import Message
from pichat.retention import Cut, Retention
from pichat.room import Page, Room
from pichat.validation import name_key

DAY_MS = 86_400_000
EPOCH = "e1"
#: A budget no test history reaches.
UNLIMITED = 1 << 30
RELAXED = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Member:
    """An opaque connection stand-in, hashable by identity like the server's clients."""


def new_room(history: list[Message] | None = None, last_id: int = 0) -> Room[Member]:
    """A room named lobby with epoch e1."""
    return Room("lobby", EPOCH, history or [], last_id)


def room_with(count: int, keep: int | None = None, last_id: int = 0) -> Room[Member]:
    """A room where ``count`` messages were created and stored, one per second.

    With ``keep``, each commit applies the count retention ``Retention(keep)``
    the way the engine does.
    """
    room = new_room(last_id=last_id)
    retention = Retention(max_messages=keep) if keep is not None else None
    for index in range(count):
        message = room.create("alice", "", f"m{index}", index * 1000)
        room.append(message)
        if retention is not None:
            room.trim(retention.cut(message.id, message.ms))
    return room


def ids(messages: list[Message]) -> list[int]:
    """The ids of a list of messages."""
    return [m.id for m in messages]


def size(message: Message) -> int:
    """What a message counts against a byte budget."""
    return len(message.v1_json())


# Names.


def test_free_name_is_kept() -> None:
    """A name nobody online has is given as asked."""
    assert new_room().join(Member(), "alice", "", 32) == "alice"


def test_taken_name_gets_numbered_suffixes() -> None:
    """Second and third members asking for a taken name get ' (2)' and ' (3)'."""
    room = new_room()
    assert [room.join(Member(), "alice", "", 32) for _ in range(3)] == [
        "alice",
        "alice (2)",
        "alice (3)",
    ]


def test_names_compare_case_insensitively() -> None:
    """A name differing only in case (or by Unicode case folding) counts as taken."""
    room = new_room()
    room.join(Member(), "alice", "", 32)
    assert room.join(Member(), "ALICE", "", 32) == "ALICE (2)"
    assert room.join(Member(), "Alice", "", 32) == "Alice (3)"
    room.join(Member(), "straße", "", 32)
    assert room.join(Member(), "STRASSE", "", 32) == "STRASSE (2)"


def test_suffix_skips_names_taken_literally() -> None:
    """A suffixed name somebody chose literally is skipped too."""
    room = new_room()
    room.join(Member(), "bob", "", 32)
    room.join(Member(), "Bob (2)", "", 32)
    assert room.join(Member(), "bob", "", 32) == "bob (3)"


def test_name_is_freed_on_leave() -> None:
    """After a member leaves, its name (any case) can be had again without suffix."""
    room = new_room()
    first, second = Member(), Member()
    room.join(first, "alice", "", 32)
    assert room.join(second, "alice", "", 32) == "alice (2)"
    assert room.leave(first) == ("alice", "")
    assert room.join(Member(), "ALICE", "", 32) == "ALICE"
    assert room.leave(second) == ("alice (2)", "")
    assert room.join(Member(), "alice", "", 32) == "alice (2)"


def test_suffix_never_exceeds_limit() -> None:
    """A name at the limit is shortened so that name plus suffix still fits."""
    room = new_room()
    names = [room.join(Member(), "abcdefghij", "", 10) for _ in range(12)]
    assert names[:3] == ["abcdefghij", "abcdef (2)", "abcdef (3)"]
    assert names[-1] == "abcde (12)"
    assert all(len(name) <= 10 for name in names)
    assert len({name.casefold() for name in names}) == len(names)


def test_shortened_name_has_no_double_space() -> None:
    """Shortening that ends on a space drops the space before the suffix."""
    room = new_room()
    room.join(Member(), "abc defg", "", 8)
    assert room.join(Member(), "abc defg", "", 8) == "abc (2)"


def test_suffix_never_exceeds_small_limit() -> None:
    """Even with a small name limit the suffixed name stays within it."""
    room = new_room()
    room.join(Member(), "ab", "", 4)
    assert len(room.join(Member(), "ab", "", 4)) <= 4


@RELAXED
@given(
    st.integers(min_value=8, max_value=64),
    st.lists(
        st.sampled_from(["a", "A", "alice", "Alice", "x" * 64, "bob (2)", "bob"]), max_size=40
    ),
)
def test_names_online_are_unique_and_within_limit(limit: int, wanted: list[str]) -> None:
    """Whatever names are asked, everyone online has a distinct name within the limit."""
    room = new_room()
    for name in wanted:
        room.join(Member(), name[:limit], "", limit)
    names = [name for name, _ in room.online()]
    assert len({name.casefold() for name in names}) == len(names)
    assert all(len(name) <= limit for name in names)


# Online list and audiences.


def test_online_is_in_join_order() -> None:
    """online() lists (name, avatar) in join order; a rejoin goes to the end."""
    room = new_room()
    a, b, c = Member(), Member(), Member()
    room.join(a, "a", "https://example.org/a.png", 32)
    room.join(b, "b", "", 32)
    room.join(c, "c", "", 32)
    assert room.online() == [("a", "https://example.org/a.png"), ("b", ""), ("c", "")]
    room.leave(b)
    assert room.online() == [("a", "https://example.org/a.png"), ("c", "")]
    room.join(b, "b", "", 32)
    assert [name for name, _ in room.online()] == ["a", "c", "b"]


def test_listeners_are_grouped_by_audience() -> None:
    """listen() files members under their audience key, in the order they came."""
    room = new_room()
    a, b, c = Member(), Member(), Member()
    room.listen(a, "v1")
    room.listen(b, "legacy")
    room.listen(c, "v1")
    assert {key: list(members) for key, members in room.audiences.items()} == {
        "v1": [a, c],
        "legacy": [b],
    }


def test_listener_leaves_without_identity() -> None:
    """A listener that never joined is not online; leaving removes it and returns None."""
    room = new_room()
    listener = Member()
    room.listen(listener, "legacy")
    assert room.online() == []
    assert room.leave(listener) is None
    assert listener not in room.audiences["legacy"]


def test_leave_removes_member_from_every_audience() -> None:
    """A joined member that leaves is neither online nor in any audience."""
    room = new_room()
    member = Member()
    room.join(member, "a", "", 32)
    room.listen(member, "v1")
    assert room.leave(member) == ("a", "")
    assert room.members == {} and room.audiences == {"v1": {}}


def test_leave_of_stranger_is_none() -> None:
    """Leaving a room one never joined returns None and changes nothing."""
    room = new_room()
    room.join(Member(), "a", "", 32)
    assert room.leave(Member()) is None
    assert room.online() == [("a", "")]


# Ids and history.


def test_room_keeps_name_and_epoch() -> None:
    """A room knows its name and the epoch of its history."""
    room = new_room()
    assert (room.name, room.epoch, room.last_id) == ("lobby", EPOCH, 0)


def test_create_ids_strictly_increase() -> None:
    """create() gives ids 1, 2, 3… with the name, avatar, text and date given."""
    room = new_room()
    messages = [room.create("alice", "", f"m{i}", 1000 * i) for i in range(5)]
    assert ids(messages) == [1, 2, 3, 4, 5]
    assert (messages[2].name, messages[2].text, messages[2].ms) == ("alice", "m2", 2000)
    assert room.last_id == 5


def test_create_does_not_store() -> None:
    """A created message enters the history only when appended."""
    room = new_room()
    message = room.create("alice", "", "hi", 0)
    assert list(room.history) == []
    room.append(message)
    assert list(room.history) == [message]


def test_create_continues_from_last_id() -> None:
    """Ids continue after last_id, even when retention dropped those messages."""
    history = [Message(i, i, "a", "", "t") for i in (7, 8, 9)]
    assert new_room(history, last_id=12).create("a", "", "t", 0).id == 13
    assert new_room(history, last_id=0).create("a", "", "t", 0).id == 10
    assert new_room([], last_id=41).create("a", "", "t", 0).id == 42


def test_append_does_not_apply_retention() -> None:
    """append() keeps every message; retention is the job of trim()."""
    room = room_with(10)
    assert ids(list(room.history)) == list(range(1, 11))


def test_trim_after_each_commit_keeps_last_max_messages() -> None:
    """Trimming with each commit's cut keeps only the newest max_messages messages."""
    room = room_with(10, keep=3)
    assert ids(list(room.history)) == [8, 9, 10]
    assert room.last_id == 10


def test_trim_applies_count_cut_to_loaded_history() -> None:
    """trim() drops a loaded history over the count limit and says how many went."""
    history = [Message(i, 0, "a", "", "t") for i in range(1, 6)]
    room = new_room(history)
    cut = Retention(max_messages=2).cut(room.last_id, 0)
    assert room.trim(cut) == 3
    assert ids(list(room.history)) == [4, 5]
    assert room.trim(cut) == 0


def test_trim_drops_messages_older_than_max_age() -> None:
    """trim() with an age cut drops messages dated before it, keeping the boundary."""
    history = [Message(i + 1, ms, "a", "", "t") for i, ms in enumerate([0, DAY_MS // 2, DAY_MS])]
    room = new_room(history)
    retention = Retention(max_age_days=1)
    assert room.trim(retention.cut(3, DAY_MS + DAY_MS // 2)) == 1
    assert ids(list(room.history)) == [2, 3]
    assert room.trim(retention.cut(3, 3 * DAY_MS)) == 2
    assert list(room.history) == []
    assert room.last_id == 3
    assert room.create("a", "", "t", 0).id == 4  # ids are never reused


def test_trim_without_age_limit_keeps_old_messages() -> None:
    """With max_age_days 0 nothing is dropped for age."""
    room = new_room([Message(1, 0, "a", "", "t")])
    assert room.trim(Retention(max_age_days=0).cut(1, 1000 * DAY_MS)) == 0
    assert ids(list(room.history)) == [1]


def test_trim_with_an_explicit_cut() -> None:
    """trim() drops exactly the front messages the cut does not keep."""
    history = [Message(i, i * 10, "a", "", "t") for i in range(1, 7)]
    room = new_room(history)
    assert room.trim(Cut(first_id=3, oldest_ms=0)) == 2
    assert room.trim(Cut(first_id=0, oldest_ms=45)) == 2
    assert ids(list(room.history)) == [5, 6]
    assert new_room().trim(Cut(10, 10)) == 0


# Fresh replay: recent().


def test_recent_by_count() -> None:
    """recent(n) is the last n messages oldest first; n <= 0 gives none."""
    room = room_with(5)
    assert ids(room.recent(2, UNLIMITED)) == [4, 5]
    assert ids(room.recent(100, UNLIMITED)) == [1, 2, 3, 4, 5]
    assert room.recent(0, UNLIMITED) == []
    assert room.recent(-3, UNLIMITED) == []
    assert room_with(0).recent(10, UNLIMITED) == []


def test_recent_by_byte_budget() -> None:
    """recent() stops before the message that would pass the byte budget."""
    room = room_with(5)
    one = size(room.history[-1])
    assert all(size(m) == one for m in room.history)
    assert ids(room.recent(100, 3 * one)) == [3, 4, 5]
    assert ids(room.recent(100, 3 * one - 1)) == [4, 5]
    assert ids(room.recent(2, 3 * one)) == [4, 5]


def test_recent_gives_at_least_one_message() -> None:
    """A single message over the budget is still replayed (the client sees the newest)."""
    room = new_room([Message(1, 0, "a", "", "x" * 1000), Message(2, 0, "a", "", "y" * 1000)])
    assert ids(room.recent(100, 10)) == [2]


# Resume pages: after().


def test_after_gives_exactly_the_messages_after() -> None:
    """after(id) gives the messages after id, oldest first, no more, no gap."""
    room = room_with(10)
    page = room.after(7, 100, UNLIMITED)
    assert page == Page(room.recent(3, UNLIMITED), False, False)
    assert ids(page.messages) == [8, 9, 10]


def test_after_last_id_gives_nothing() -> None:
    """A client that saw the last message gets an empty page: no more, no gap."""
    assert room_with(10).after(10, 100, UNLIMITED) == Page([], False, False)


def test_after_zero_gives_everything() -> None:
    """after 0 (saw nothing yet) gives the whole history without a gap."""
    page = room_with(4).after(0, 100, UNLIMITED)
    assert (ids(page.messages), page.more, page.gap) == ([1, 2, 3, 4], False, False)


def test_after_pages_by_count() -> None:
    """With more messages than the count, the page is the oldest ones and more is true."""
    room = room_with(10)
    page = room.after(2, 3, UNLIMITED)
    assert (ids(page.messages), page.more, page.gap) == ([3, 4, 5], True, False)
    page = room.after(5, 3, UNLIMITED)
    assert (ids(page.messages), page.more) == ([6, 7, 8], True)
    page = room.after(8, 3, UNLIMITED)
    assert (ids(page.messages), page.more) == ([9, 10], False)
    assert room.after(7, 3, UNLIMITED).more is False  # exactly the count left


def test_after_pages_by_byte_budget() -> None:
    """A page stops before the message that would pass the byte budget."""
    room = room_with(10)
    one = size(room.history[0])
    page = room.after(0, 100, 4 * one)
    assert (ids(page.messages), page.more) == ([1, 2, 3, 4], True)
    page = room.after(0, 100, 4 * one - 1)
    assert (ids(page.messages), page.more) == ([1, 2, 3], True)
    rest = list(room.history)[6:]
    assert room.after(6, 100, sum(map(size, rest))) == Page(rest, False, False)


def test_after_gives_at_least_one_message() -> None:
    """A message bigger than the budget makes a page of its own, so paging advances."""
    room = new_room([Message(i, 0, "a", "", "x" * 1000) for i in (1, 2, 3)])
    page = room.after(0, 100, 10)
    assert (ids(page.messages), page.more) == ([1], True)
    assert ids(room.after(2, 100, 10).messages) == [3]
    assert room.after(2, 100, 10).more is False


def test_after_with_zero_count_still_advances() -> None:
    """Even with a replay count of 0, a page with messages left holds at least one."""
    page = room_with(3).after(0, 0, UNLIMITED)
    assert page.messages or not page.more


def test_after_reports_gap_when_retention_dropped_messages() -> None:
    """When retention dropped messages after the cursor, the page starts at the oldest kept."""
    room = room_with(10, keep=5)  # keeps 6..10
    page = room.after(5, 100, UNLIMITED)
    assert (ids(page.messages), page.gap) == ([6, 7, 8, 9, 10], False)
    page = room.after(4, 100, UNLIMITED)
    assert (ids(page.messages), page.gap) == ([6, 7, 8, 9, 10], True)
    assert room.after(0, 100, UNLIMITED).gap is True
    page = room.after(8, 100, UNLIMITED)
    assert (ids(page.messages), page.gap) == ([9, 10], False)


def test_after_with_gap_and_more() -> None:
    """A page can report a gap and more at once."""
    room = room_with(10, keep=5)
    assert room.after(1, 2, UNLIMITED) == Page(list(room.history)[:2], True, True)


def test_after_with_empty_history() -> None:
    """With everything expired, a page is empty, with a gap unless the cursor is the last id."""
    room = new_room([], last_id=10)
    assert room.after(10, 100, UNLIMITED) == Page([], False, False)
    assert room.after(5, 100, UNLIMITED) == Page([], False, True)
    assert new_room().after(0, 100, UNLIMITED) == Page([], False, False)


def test_a_moderator_removing_messages_is_no_gap() -> None:
    """Deleting the oldest message, or clearing the room, loses nothing a client must hear of.

    Only retention moves the gap line: a page resuming from before a deleted or
    cleared message was not "away while messages were dropped".
    """
    room = room_with(5)
    assert room.remove(1) is not None
    assert room.after(0, 100, UNLIMITED).gap is False
    room.remove(2)
    assert room.after(0, 100, UNLIMITED) == Page(list(room.history), False, False)
    room.clear()
    assert room.after(3, 100, UNLIMITED) == Page([], False, False)
    # Retention after a clear still reports what it dropped.
    room = room_with(6)
    room.remove(1)
    assert room.trim(Cut(first_id=4, oldest_ms=0)) == 2
    assert room.after(1, 100, UNLIMITED).gap is True
    assert room.after(3, 100, UNLIMITED).gap is False


def test_after_pending_message_is_no_gap() -> None:
    """A message created but not yet stored is not a gap for a cursor in an empty room."""
    room = new_room()
    room.create("alice", "", "pending", 0)
    assert room.after(0, 100, UNLIMITED) == Page([], False, False)


def test_after_with_non_contiguous_ids() -> None:
    """With ids missing from the history (a failed store burned one), pages still find them."""
    history = [Message(i, 0, "a", "", "t") for i in (1, 2, 3, 5, 6, 9)]
    room = new_room(history)
    assert room.after(3, 100, UNLIMITED) == Page(history[3:], False, False)
    assert room.after(4, 100, UNLIMITED) == Page(history[3:], False, False)
    assert ids(room.after(2, 100, UNLIMITED).messages) == [3, 5, 6, 9]
    assert ids(room.after(6, 100, UNLIMITED).messages) == [9]
    assert ids(room.after(7, 100, UNLIMITED).messages) == [9]
    assert room.after(9, 100, UNLIMITED) == Page([], False, False)
    assert room.after(3, 1, UNLIMITED) == Page(history[3:4], True, False)


def test_after_beyond_last_id_is_empty() -> None:
    """A cursor past the last id gets an empty page (the engine treats it as a new history)."""
    assert room_with(10).after(11, 100, UNLIMITED) == Page([], False, False)
    assert room_with(10).after(10**12, 100, UNLIMITED) == Page([], False, False)


@RELAXED
@given(
    st.integers(min_value=0, max_value=60),
    st.integers(min_value=1, max_value=30),
    st.integers(min_value=1, max_value=8),
    st.integers(min_value=1, max_value=400),
    st.data(),
)
def test_paging_property(
    count: int, keep: int, per_page: int, budget: int, data: st.DataObject
) -> None:
    """Paging from any cursor gives exactly the kept messages after it: no duplicate, no gap.

    Each page holds at most ``per_page`` messages and ``budget`` bytes (or one message),
    and only the first page can report a gap.
    """
    room = room_with(count, keep=keep)
    since = data.draw(st.integers(min_value=0, max_value=count))
    first_kept = max(1, count - keep + 1)
    got: list[int] = []
    cursor = since
    for number in range(count + 2):
        page = room.after(cursor, per_page, budget)
        assert len(page.messages) <= per_page
        assert len(page.messages) == 1 or sum(map(size, page.messages)) <= budget
        assert page.gap is (number == 0 and since + 1 < first_kept and count > 0)
        got += ids(page.messages)
        if not page.more:
            break
        assert page.messages
        cursor = page.messages[-1].id
    else:
        pytest.fail("paging did not end")
    assert got == list(range(max(since + 1, first_kept), count + 1))
    # The next message after a resume is the next id: nothing lost, nothing twice.
    assert room.create("a", "", "t", 0).id == count + 1


@pytest.mark.parametrize(
    "name", ["alice", "ALICE", " Bob Smith ", "x\ty", "Ada (2)", "".join(map(chr, range(32, 127)))]
)
def test_ascii_names_get_the_same_key_on_the_fast_path(name: str) -> None:
    """An ASCII name's key (fast path) is what the full NFKC/casefold/ignorable path gives.

    A zero-width space is ignorable: appended, it forces the full path and drops out.
    """
    assert name_key(name) == name_key(name + "\u200b")
