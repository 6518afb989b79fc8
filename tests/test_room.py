"""Room state without I/O: unique names, online order, ids, retention and resume."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pichat.protocol import Message
from pichat.retention import Retention
from pichat.room import Room

DAY_MS = 86_400_000
RELAXED = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Member:
    """An opaque connection stand-in, hashable by identity like the server's clients."""


def room_with(count: int, max_messages: int = 1000, last_id: int = 0) -> Room[Member]:
    """A room where ``count`` messages were created and stored, one per second."""
    room: Room[Member] = Room("lobby", Retention(max_messages=max_messages), last_id=last_id)
    for index in range(count):
        room.append(room.create("alice", "", f"m{index}", index * 1000))
    return room


def ids(messages: list[Message]) -> list[int]:
    """The ids of a list of messages."""
    return [m.id for m in messages]


# Names.


def test_free_name_is_kept() -> None:
    """A name nobody online has is given as asked."""
    room: Room[Member] = Room("lobby", Retention())
    assert room.join(Member(), "alice", "", 32) == "alice"


def test_taken_name_gets_numbered_suffixes() -> None:
    """Second and third members asking for a taken name get ' (2)' and ' (3)'."""
    room: Room[Member] = Room("lobby", Retention())
    assert [room.join(Member(), "alice", "", 32) for _ in range(3)] == [
        "alice",
        "alice (2)",
        "alice (3)",
    ]


def test_names_compare_case_insensitively() -> None:
    """A name differing only in case (or by Unicode case folding) counts as taken."""
    room: Room[Member] = Room("lobby", Retention())
    room.join(Member(), "alice", "", 32)
    assert room.join(Member(), "ALICE", "", 32) == "ALICE (2)"
    assert room.join(Member(), "Alice", "", 32) == "Alice (3)"
    room.join(Member(), "straße", "", 32)
    assert room.join(Member(), "STRASSE", "", 32) == "STRASSE (2)"


def test_suffix_skips_names_taken_literally() -> None:
    """A suffixed name somebody chose literally is skipped too."""
    room: Room[Member] = Room("lobby", Retention())
    room.join(Member(), "bob", "", 32)
    room.join(Member(), "Bob (2)", "", 32)
    assert room.join(Member(), "bob", "", 32) == "bob (3)"


def test_name_is_freed_on_leave() -> None:
    """After a member leaves, its name (any case) can be had again without suffix."""
    room: Room[Member] = Room("lobby", Retention())
    first, second = Member(), Member()
    room.join(first, "alice", "", 32)
    assert room.join(second, "alice", "", 32) == "alice (2)"
    assert room.leave(first) == ("alice", "")
    assert room.join(Member(), "ALICE", "", 32) == "ALICE"
    assert room.leave(second) == ("alice (2)", "")
    assert room.join(Member(), "alice", "", 32) == "alice (2)"


def test_suffix_never_exceeds_limit() -> None:
    """A name at the limit is shortened so that name plus suffix still fits."""
    room: Room[Member] = Room("lobby", Retention())
    names = [room.join(Member(), "abcdefghij", "", 10) for _ in range(12)]
    assert names[:3] == ["abcdefghij", "abcdef (2)", "abcdef (3)"]
    assert names[-1] == "abcde (12)"
    assert all(len(name) <= 10 for name in names)
    assert len({name.casefold() for name in names}) == len(names)


def test_shortened_name_has_no_double_space() -> None:
    """Shortening that ends on a space drops the space before the suffix."""
    room: Room[Member] = Room("lobby", Retention())
    room.join(Member(), "abc defg", "", 8)
    assert room.join(Member(), "abc defg", "", 8) == "abc (2)"


def test_suffix_never_exceeds_small_limit() -> None:
    """Even with a small name limit the suffixed name stays within it."""
    room: Room[Member] = Room("lobby", Retention())
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
    room: Room[Member] = Room("lobby", Retention())
    for name in wanted:
        room.join(Member(), name[:limit], "", limit)
    names = [name for name, _ in room.online()]
    assert len({name.casefold() for name in names}) == len(names)
    assert all(len(name) <= limit for name in names)


# Online list and listeners.


def test_online_is_in_join_order() -> None:
    """online() lists (name, avatar) in join order; a rejoin goes to the end."""
    room: Room[Member] = Room("lobby", Retention())
    a, b, c = Member(), Member(), Member()
    room.join(a, "a", "https://example.org/a.png", 32)
    room.join(b, "b", "", 32)
    room.join(c, "c", "", 32)
    assert room.online() == [("a", "https://example.org/a.png"), ("b", ""), ("c", "")]
    room.leave(b)
    assert room.online() == [("a", "https://example.org/a.png"), ("c", "")]
    room.join(b, "b", "", 32)
    assert [name for name, _ in room.online()] == ["a", "c", "b"]


def test_listener_leaves_without_identity() -> None:
    """A legacy listener is not online; leaving removes it and returns None."""
    room: Room[Member] = Room("lobby", Retention())
    listener = Member()
    room.listeners.add(listener)
    assert room.online() == []
    assert room.leave(listener) is None
    assert listener not in room.listeners


def test_leave_of_stranger_is_none() -> None:
    """Leaving a room one never joined returns None and changes nothing."""
    room: Room[Member] = Room("lobby", Retention())
    room.join(Member(), "a", "", 32)
    assert room.leave(Member()) is None
    assert room.online() == [("a", "")]


# Ids and history.


def test_create_ids_strictly_increase() -> None:
    """create() gives ids 1, 2, 3… with the name, avatar, text and date given."""
    room: Room[Member] = Room("lobby", Retention())
    messages = [room.create("alice", "", f"m{i}", 1000 * i) for i in range(5)]
    assert ids(messages) == [1, 2, 3, 4, 5]
    assert (messages[2].name, messages[2].text, messages[2].ms) == ("alice", "m2", 2000)
    assert room.last_id == 5


def test_create_does_not_store() -> None:
    """A created message enters the history only when appended."""
    room: Room[Member] = Room("lobby", Retention())
    message = room.create("alice", "", "hi", 0)
    assert list(room.history) == []
    room.append(message)
    assert list(room.history) == [message]


def test_create_continues_from_last_id() -> None:
    """Ids continue after last_id, even when retention dropped those messages."""
    history = [Message(i, i, "a", "", "t") for i in (7, 8, 9)]
    room: Room[Member] = Room("lobby", Retention(), history, last_id=12)
    assert room.create("a", "", "t", 0).id == 13
    assert Room("lobby", Retention(), history, last_id=0).create("a", "", "t", 0).id == 10
    assert Room("lobby", Retention(), [], last_id=41).create("a", "", "t", 0).id == 42


def test_append_keeps_last_max_messages() -> None:
    """append() keeps only the newest max_messages messages."""
    room = room_with(10, max_messages=3)
    assert ids(list(room.history)) == [8, 9, 10]
    assert room.last_id == 10


def test_expire_applies_count_limit_to_loaded_history() -> None:
    """expire() trims a history loaded over the count limit and says how many went."""
    history = [Message(i, 0, "a", "", "t") for i in range(1, 6)]
    room: Room[Member] = Room("lobby", Retention(max_messages=2), history)
    assert room.expire(now_ms=0) == 3
    assert ids(list(room.history)) == [4, 5]
    assert room.expire(now_ms=0) == 0


def test_expire_drops_messages_older_than_max_age() -> None:
    """expire() drops messages dated before now minus max_age_days, keeping the boundary."""
    history = [Message(i + 1, ms, "a", "", "t") for i, ms in enumerate([0, DAY_MS // 2, DAY_MS])]
    room: Room[Member] = Room("lobby", Retention(max_age_days=1), history)
    assert room.expire(now_ms=DAY_MS + DAY_MS // 2) == 1
    assert ids(list(room.history)) == [2, 3]
    assert room.expire(now_ms=3 * DAY_MS) == 2
    assert list(room.history) == []
    assert room.last_id == 3


def test_expire_without_age_limit_keeps_old_messages() -> None:
    """With max_age_days 0 nothing is dropped for age."""
    history = [Message(1, 0, "a", "", "t")]
    room: Room[Member] = Room("lobby", Retention(max_age_days=0), history)
    assert room.expire(now_ms=1000 * DAY_MS) == 0
    assert ids(list(room.history)) == [1]


def test_recent() -> None:
    """recent(n) is the last n messages oldest first; n <= 0 gives none."""
    room = room_with(5)
    assert ids(room.recent(2)) == [4, 5]
    assert ids(room.recent(100)) == [1, 2, 3, 4, 5]
    assert room.recent(0) == []
    assert room.recent(-3) == []
    assert room_with(0).recent(10) == []


# Resume.


def test_since_gives_exactly_the_messages_after() -> None:
    """since(id) gives the messages after id, oldest first, resumed, no gap."""
    room = room_with(10)
    assert room.since(7, 100) == (room.recent(3), True, False)
    assert ids(room.since(7, 100)[0]) == [8, 9, 10]


def test_since_ignores_replay_count() -> None:
    """A resume returns every message after since, even more than history_replay."""
    room = room_with(10)
    messages, resumed, gap = room.since(2, 3)
    assert ids(messages) == [3, 4, 5, 6, 7, 8, 9, 10]
    assert (resumed, gap) == (True, False)


def test_since_last_id_gives_nothing() -> None:
    """A client that saw the last message gets no history, resumed, no gap."""
    assert room_with(10).since(10, 100) == ([], True, False)


def test_since_zero_gives_everything() -> None:
    """since 0 (saw nothing yet) gives the whole history without a gap."""
    room = room_with(4)
    messages, resumed, gap = room.since(0, 2)
    assert (ids(messages), resumed, gap) == ([1, 2, 3, 4], True, False)


def test_since_reports_gap_when_retention_dropped_messages() -> None:
    """When retention dropped messages after since, the history starts at the oldest kept."""
    room = room_with(10, max_messages=5)  # keeps 6..10
    assert (ids(room.since(5, 100)[0]), room.since(5, 100)[1:]) == ([6, 7, 8, 9, 10], (True, False))
    assert (ids(room.since(4, 100)[0]), room.since(4, 100)[1:]) == ([6, 7, 8, 9, 10], (True, True))
    assert room.since(0, 100)[1:] == (True, True)
    assert (ids(room.since(8, 100)[0]), room.since(8, 100)[1:]) == ([9, 10], (True, False))


def test_since_with_empty_history() -> None:
    """With everything expired, a resume gets nothing, and a gap unless it saw the last id."""
    room: Room[Member] = Room("lobby", Retention(), [], last_id=10)
    assert room.since(10, 100) == ([], True, False)
    assert room.since(5, 100) == ([], True, True)
    assert Room("lobby", Retention()).since(0, 100) == ([], True, False)


def test_since_from_the_future_gets_replay() -> None:
    """A cursor past the last id gets the usual replay with resumed false and gap true."""
    room = room_with(10)
    messages, resumed, gap = room.since(11, 3)
    assert (ids(messages), resumed, gap) == ([8, 9, 10], False, True)
    assert room.since(10**12, 0) == ([], False, True)
    assert Room("lobby", Retention()).since(1, 100) == ([], False, True)


def test_since_with_burned_ids() -> None:
    """With ids missing from the history (a failed store burned one), since still finds them."""
    history = [Message(i, 0, "a", "", "t") for i in (1, 2, 3, 5, 6)]
    room: Room[Member] = Room("lobby", Retention(), history)
    assert (ids(room.since(3, 100)[0]), room.since(3, 100)[1:]) == ([5, 6], (True, False))
    assert (ids(room.since(4, 100)[0]), room.since(4, 100)[1:]) == ([5, 6], (True, False))
    assert ids(room.since(2, 100)[0]) == [3, 5, 6]
    assert room.since(6, 100) == ([], True, False)


@RELAXED
@given(
    st.integers(min_value=0, max_value=60),
    st.integers(min_value=1, max_value=30),
    st.data(),
)
def test_since_property(count: int, max_messages: int, data: st.DataObject) -> None:
    """For every cursor up to the last id: exactly the kept messages after it, no duplicate."""
    room = room_with(count, max_messages=max_messages)
    since = data.draw(st.integers(min_value=0, max_value=count))
    messages, resumed, gap = room.since(since, 100)
    first_kept = max(1, count - max_messages + 1)
    assert ids(messages) == list(range(max(since + 1, first_kept), count + 1))
    assert resumed is True
    assert gap is (since + 1 < first_kept)
    # The next message after a resume is the next id: nothing lost, nothing twice.
    message = room.create("a", "", "t", 0)
    assert message.id == count + 1
