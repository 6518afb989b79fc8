"""Moderation with plain calls: reserved names, passwords, and every moderator frame.

The engine runs with the fake outbox and history of tests/test_chat.py; each
test drives frames in and reads what was queued, closed, deleted and banned.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from pichat.bans import Ban, Bans
from pichat.chat import ChatConfig, Member
from pichat.legacy import LEGACY
from pichat.moderation import BAN_CODE, KICK_CODE, MODERATION_TYPES
from pichat.password_guard import MAX_PENDING
from pichat.passwords import Moderators, PasswordHash, hash_password, parse_hash, verify_password
from pichat.room import Room
from pichat.rules import RoomRules, rules_from_json
from pichat.validation import name_key
from tests.test_chat import NOW_MS, Harness, errors, messages, stored

PASSWORD = "correct horse"
# A cheap cost (N=16): the tests are about the rules, not about scrypt's strength.
HASH = hash_password(PASSWORD, n=16)
CONFIG = ChatConfig(moderators=Moderators.of([("Alice", parse_hash(HASH))]))


def harness(**kwargs: Any) -> Harness:
    """An engine whose one moderator is Alice."""
    return Harness(config=CONFIG, **kwargs)


def moderator(h: Harness, address: str = "192.0.2.1") -> Member:
    """Alice, joined with her password."""
    member, welcome = h.join("Alice", address=address, password=PASSWORD)
    assert welcome["you"]["moderator"] is True
    return member


def last_error(h: Harness, member: Member) -> str:
    """The code of the last frame queued for ``member``, an error."""
    frame = h.outbox.last(member)
    assert frame["type"] == "error", frame
    return str(frame["code"])


# Names and passwords, pure.


@pytest.mark.parametrize("other", ["alice", "ALICE", "ａｌｉｃｅ", "Alice\u200b", "A\u00adlice"])
def test_name_key_makes_lookalikes_one_name(other: str) -> None:
    """Case, full-width forms and default-ignorable characters do not make a new name."""
    assert name_key(other) == name_key("Alice")


def test_room_uniqueness_compares_name_keys() -> None:
    """A second 'ａｌｉｃｅ' online with 'Alice' gets a suffix."""
    room: Room[object] = Room("lobby", "e")
    room.join(object(), "Alice", "", 32)
    assert room.join(object(), "ａｌｉｃｅ", "", 32) == "ａｌｉｃｅ (2)"
    assert room.join(object(), "Alice\u200b", "", 32) == "Alice\u200b (3)"


def test_invisible_name_is_refused() -> None:
    """A name made only of zero-width characters is bad_name."""
    h = Harness()
    member = h.connect()
    h.send(member, type="join", name="\u200b\u200d")
    assert last_error(h, member) == "bad_name"


def test_hash_password_is_salted_scrypt_and_verifies() -> None:
    """Hashes are scrypt$..., differ per call (random salt) and verify only the password."""
    first, second = hash_password("pw", n=16), hash_password("pw", n=16)
    assert first.startswith("scrypt$16$8$1$") and first != second
    assert verify_password("pw", parse_hash(first))
    assert not verify_password("pW", parse_hash(first))
    assert str(parse_hash(first)) == first


@pytest.mark.parametrize(
    "text", ["", "pw", "bcrypt$1$2$3$4$5", "scrypt$15$8$1$AAAAAAAAAAA$" + "A" * 43, "scrypt$x"]
)
def test_parse_hash_refuses_malformed_hashes(text: str) -> None:
    """Anything but a well-formed scrypt hash is a ValueError (a config error)."""
    with pytest.raises(ValueError):
        parse_hash(text)


# Joining under a reserved name.


def test_reserved_name_needs_its_password() -> None:
    """Without a password: name_reserved, the connection stays and may join as another."""
    h = harness()
    member = h.connect()
    h.send(member, type="join", name="alice")
    assert last_error(h, member) == "name_reserved"
    assert member.name is None
    h.send(member, type="join", name="bob")
    assert h.outbox.last(member)["you"] == {"name": "bob", "avatar": ""}


def test_wrong_password_is_bad_password() -> None:
    """A wrong password: bad_password, not joined."""
    h = harness()
    member = h.connect(address="192.0.2.9")
    h.send(member, type="join", name="ALICE", password="guess")
    assert last_error(h, member) == "bad_password"
    assert member.name is None and not member.moderator


def test_wrong_passwords_are_limited_per_address() -> None:
    """Five wrong passwords a minute per address; then rate_limited, other addresses not."""
    h = harness()
    member = h.connect(address="192.0.2.9")
    for _ in range(5):
        h.send(member, type="join", name="alice", password="guess")
        assert last_error(h, member) == "bad_password"
    h.send(member, type="join", name="alice", password=PASSWORD)
    frame = h.outbox.last(member)
    assert frame["code"] == "rate_limited" and frame["retry_after"] > 0
    other = h.connect(address="192.0.2.10")
    h.send(other, type="join", name="alice", password=PASSWORD)
    assert h.outbox.last(other)["you"]["moderator"] is True
    h.clock.now += 13  # one try back (5 per 60 s)
    h.send(member, type="join", name="alice", password=PASSWORD)
    assert h.outbox.last(member)["type"] == "welcome"


def test_moderator_badge_in_welcome_presence_online_and_messages() -> None:
    """A moderator's welcome, presence, online entry and messages say moderator: true."""
    h = harness()
    bob, _ = h.join("bob")
    h.tick()
    alice = moderator(h)
    h.tick()
    assert h.outbox.last(bob) == {
        "type": "presence",
        "joined": [{"name": "Alice", "avatar": "", "moderator": True}],
        "left": [],
        "count": 2,
    }
    carol, welcome = h.join("carol")
    assert welcome["online"] == [
        {"name": "bob", "avatar": ""},
        {"name": "Alice", "avatar": "", "moderator": True},
        {"name": "carol", "avatar": ""},
    ]
    h.say(alice, "hello")
    h.say(bob, "hi")
    h.commit()
    assert [m.get("moderator", False) for m in messages(h.outbox.frames(carol))] == [True, False]
    h.chat.closed(alice)
    h.tick()
    assert h.outbox.last(bob)["left"] == ["Alice"]


def test_password_for_an_ordinary_name_is_ignored() -> None:
    """A password with a name nobody reserved changes nothing: an ordinary member."""
    h = harness()
    member, welcome = h.join("bob", password="whatever")
    assert "moderator" not in welcome["you"] and not member.moderator


# Who may moderate.


@pytest.mark.parametrize("kind", sorted(MODERATION_TYPES))
def test_moderator_frames_are_forbidden_to_others(kind: str) -> None:
    """Every moderator frame from an ordinary member is forbidden and changes nothing."""
    h = harness(history=stored(3), last_id=3)
    bob, _ = h.join("bob")
    h.send(bob, type=kind, id=1, name="bob", minutes=5, locked=True, seconds=5)
    assert last_error(h, bob) == "forbidden"
    assert len(h.room.history) == 3 and not h.outbox.closed and not h.history.deletions


def test_moderator_frame_before_join_is_not_joined() -> None:
    """A moderator frame before join: not_joined."""
    h = harness()
    member = h.connect()
    h.send(member, type="clear")
    assert last_error(h, member) == "not_joined"


# delete and clear.


def test_delete_removes_the_message_everywhere() -> None:
    """delete: gone from memory, queued for the database, everyone told; resume skips it."""
    h = harness(history=stored(3), last_id=3)
    bob, _ = h.join("bob")
    alice = moderator(h)
    h.send(alice, type="delete", id=2)
    assert h.outbox.last(bob) == {"type": "deleted", "id": 2}
    assert h.outbox.last(alice) == {"type": "done", "action": "delete", "id": 2}
    assert [m.id for m in h.room.history] == [1, 3]
    assert h.history.deletions[-1].ids == (2,)
    _, welcome = h.join("carol", since=1, epoch="epoch-1")
    assert [m["id"] for m in welcome["history"]] == [3]
    h.say(bob, "new")
    assert h.commit()[0].message.id == 4  # ids are never reused


@pytest.mark.parametrize(("value", "code"), [(9, "no_message"), ("2", "bad_id"), (None, "bad_id")])
def test_bad_delete_changes_nothing(value: Any, code: str) -> None:
    """delete of an unknown id or a non-integer: an error, the history untouched."""
    h = harness(history=stored(3), last_id=3)
    alice = moderator(h)
    h.send(alice, type="delete", id=value)
    assert last_error(h, alice) == code
    assert len(h.room.history) == 3 and not h.history.deletions


def test_clear_empties_the_history() -> None:
    """clear: everyone gets cleared, the history is empty up to the newest stored id."""
    h = harness(history=stored(5), last_id=5)
    bob, _ = h.join("bob")
    alice = moderator(h)
    h.send(alice, type="clear")
    assert h.outbox.last(bob) == {"type": "cleared"}
    assert not h.room.history and h.history.deletions[-1].through == 5
    _, welcome = h.join("carol")
    assert welcome["history"] == []


# kick, ban, unban.


def test_kick_closes_the_member_with_4001() -> None:
    """kick: bob leaves the room at once (presence) and is closed with 4001 and the reason."""
    h = harness()
    bob, _ = h.join("bob")
    carol, _ = h.join("carol")
    alice = moderator(h)
    h.send(alice, type="kick", name="BOB", reason="be nice")
    assert h.outbox.closed == [(bob, KICK_CODE, "be nice")]
    h.tick()
    assert h.outbox.last(carol)["left"] == ["bob"]
    assert bob.room is None and h.room.online() == [("carol", ""), ("Alice", "")]
    h.say(bob, "still here?")  # in flight after the kick: not heard
    assert not h.history.appended


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"name": "nobody"}, "no_member"),
        ({"name": 3}, "bad_name"),
        ({"name": "Alice"}, "bad_target"),
        ({"name": "bob", "reason": "x" * 201}, "bad_reason"),
        ({"name": "bob", "reason": "a\x00b"}, "bad_reason"),
    ],
)
def test_bad_kick_changes_nothing(fields: dict[str, Any], code: str) -> None:
    """kick of nobody, of a moderator, or with a bad reason: an error, nobody closed."""
    h = harness()
    h.join("bob")
    alice = moderator(h)
    h.send(alice, type="kick", **fields)
    assert last_error(h, alice) == code
    assert not h.outbox.closed and len(h.room.members) == 2


def test_kick_reason_is_cut_to_a_close_frame() -> None:
    """A close reason carries at most 123 bytes: a long reason is cut on a character."""
    h = harness()
    bob, _ = h.join("bob")
    alice = moderator(h)
    h.send(alice, type="kick", name="bob", reason="é" * 100)
    reason = h.outbox.closed[0][2]
    assert len(reason.encode()) <= 123 and set(reason) == {"é"}


def test_ban_closes_bans_address_and_name() -> None:
    """ban: 4003 for bob and his address's other connections; address and name banned."""
    h = harness()
    bob, _ = h.join("bob", address="198.51.100.7")
    lurker = h.connect(address="198.51.100.7")  # same address, not joined
    carol, _ = h.join("carol", address="203.0.113.5")
    alice = moderator(h)
    h.send(alice, type="ban", name="bob", minutes=60, reason="spam")
    assert {(m, code) for m, code, _ in h.outbox.closed} == {(bob, BAN_CODE), (lurker, BAN_CODE)}
    assert carol.room is not None
    assert h.history.bans == [
        Ban("198.51.100.7", "bob", NOW_MS + 3_600_000, "spam", "lobby", "Alice", NOW_MS, "bob")
    ]
    moderation = h.chat.moderation
    assert moderation.banned_address("198.51.100.7") is not None
    assert moderation.banned_address("::ffff:198.51.100.7") is not None
    again = h.connect(address="203.0.113.99")
    h.send(again, type="join", name="Bob")
    assert last_error(h, again) == "name_banned"
    h.wall += 3_600_000  # the hour is over
    assert moderation.banned_address("198.51.100.7") is None
    h.send(again, type="join", name="Bob")
    assert h.outbox.last(again)["type"] == "welcome"


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"name": "bob", "minutes": -1}, "bad_minutes"),
        ({"name": "bob", "minutes": 1.5}, "bad_minutes"),
        ({"name": "bob", "minutes": True}, "bad_minutes"),
        ({"name": "bob", "minutes": 10**9}, "bad_minutes"),
        ({"name": "bob", "reason": ["x"]}, "bad_reason"),
        ({"name": "zed"}, "no_member"),
        ({"name": "alice"}, "bad_target"),
    ],
)
def test_bad_ban_changes_nothing(fields: dict[str, Any], code: str) -> None:
    """A ban with bad minutes or reason, of nobody or of a moderator: nothing banned."""
    h = harness()
    h.join("bob", address="198.51.100.7")
    alice = moderator(h)
    h.send(alice, type="ban", **fields)
    assert last_error(h, alice) == code
    assert not h.outbox.closed and not h.chat.moderation.bans.rows and not h.history.bans


def test_ban_for_zero_minutes_lasts_until_lifted() -> None:
    """minutes 0 bans until unban; unban by address or by name lifts it."""
    h = harness()
    h.join("bob", address="198.51.100.7")
    alice = moderator(h)
    h.send(alice, type="ban", name="bob", minutes=0)
    h.wall += 10 * 365 * 86_400_000
    assert h.chat.moderation.banned_address("198.51.100.7") is not None
    h.send(alice, type="unban", address="198.51.100.7")
    assert h.outbox.last(alice) == {"type": "done", "action": "unban", "count": 1}
    assert h.chat.moderation.banned_address("198.51.100.7") is None
    assert h.history.bans == []


@pytest.mark.parametrize(
    ("fields", "code"),
    [({"address": "bob"}, "bad_address"), ({"address": "192.0.2.200"}, "no_ban"), ({}, "bad_name")],
)
def test_bad_unban_is_an_error(fields: dict[str, Any], code: str) -> None:
    """unban with a bad address, no match, or neither address nor name: an error."""
    h = harness()
    h.join("bob", address="198.51.100.7")
    alice = moderator(h)
    h.send(alice, type="ban", name="bob")
    h.send(alice, type="unban", **fields)
    assert last_error(h, alice) == code
    assert len(h.history.bans) == 1


def test_unban_by_name() -> None:
    """unban by a look-alike of the name lifts it."""
    h = harness()
    h.join("bob", address="198.51.100.7")
    alice = moderator(h)
    h.send(alice, type="ban", name="bob")
    h.send(alice, type="unban", name="ＢＯＢ")
    assert h.outbox.last(alice)["action"] == "unban" and not h.history.bans


async def test_stored_bans_load_and_expired_ones_go() -> None:
    """load() takes the stored bans and drops (and rewrites) expired ones."""
    h = harness()
    h.history.bans = [Ban("192.0.2.1", "", 0), Ban("192.0.2.2", "", NOW_MS - 1)]
    await h.chat.moderation.load()
    assert h.chat.moderation.banned_address("192.0.2.1") is not None
    assert h.history.bans == [Ban("192.0.2.1", "", 0)]


def test_bans_table_replaces_a_repeated_ban() -> None:
    """Banning the same address and name again replaces the earlier ban."""
    bans = Bans()
    bans.add([Ban("a", "n", 5)])
    bans.add([Ban("a", "n", 0)])
    assert bans.rows == [Ban("a", "n", 0)]


class HeldVerifier:
    """Password checks that answer only when the test says: the daemon's run in a thread."""

    def __init__(self) -> None:
        self.waiting: list[tuple[PasswordHash, str, Callable[[bool], None]]] = []

    def __call__(self, stored: PasswordHash, password: str, done: Callable[[bool], None]) -> None:
        self.waiting.append((stored, password, done))

    def answer(self) -> None:
        """Answer the oldest check with the real verdict."""
        stored, password, done = self.waiting.pop(0)
        done(verify_password(password, stored))


def test_a_password_check_does_not_hold_the_engine() -> None:
    """While scrypt runs, the member is not joined, others chat, and the answer joins it."""
    held = HeldVerifier()
    h = harness(verifier=held)
    bob, _ = h.join("bob")
    alice = h.connect(address="192.0.2.1")
    h.send(alice, type="join", name="Alice", password=PASSWORD)
    assert h.outbox.frames(alice) == [] and len(held.waiting) == 1
    h.say(bob, "meanwhile")
    assert len(h.history.appended) == 1  # the engine went on
    h.say(alice, "too early")
    assert last_error(h, alice) == "not_joined"
    h.send(alice, type="join", name="Alice", password=PASSWORD)
    assert last_error(h, alice) == "already_joined" and len(held.waiting) == 1
    held.answer()
    welcome = h.outbox.last(alice)
    assert welcome["type"] == "welcome" and welcome["you"]["moderator"] is True
    h.tick()
    assert h.outbox.last(bob)["type"] == "presence"


def test_a_wrong_password_answered_later_is_an_error_and_counts() -> None:
    """bad_password arrives when the check answers; the connection may try again."""
    held = HeldVerifier()
    h = harness(verifier=held)
    alice = h.connect(address="192.0.2.1")
    h.send(alice, type="join", name="Alice", password="wrong")
    held.answer()
    assert last_error(h, alice) == "bad_password"
    h.send(alice, type="join", name="Alice", password=PASSWORD)
    held.answer()
    assert h.outbox.last(alice)["type"] == "welcome"


def test_a_connection_closed_during_its_check_is_forgotten() -> None:
    """The answer for a connection that left sends nothing and joins nobody."""
    held = HeldVerifier()
    h = harness(verifier=held)
    alice = h.connect(address="192.0.2.1")
    h.send(alice, type="join", name="Alice", password=PASSWORD)
    h.chat.closed(alice)
    held.answer()
    assert h.outbox.frames(alice) == []
    assert not h.room.members and not h.chat.moderation.pending


def test_password_checks_in_flight_are_bounded() -> None:
    """A crowd of addresses cannot queue unbounded scrypt work: past the bound, rate_limited."""
    held = HeldVerifier()
    h = harness(verifier=held)
    members = [h.connect(address=f"198.51.100.{i}") for i in range(MAX_PENDING + 1)]
    for member in members:
        h.send(member, type="join", name="Alice", password="guess")
    assert len(held.waiting) == MAX_PENDING
    assert last_error(h, members[-1]) == "rate_limited"
    assert h.outbox.last(members[-1])["retry_after"] > 0
    while held.waiting:
        held.answer()
    assert h.chat.moderation.passwords.pending == 0
    assert h.chat.moderation.pending == {}


# mute, lock, slow.


def test_mute_silences_name_and_address_for_its_minutes() -> None:
    """A muted member's say gets muted (retry_after), also under a new name, until it ends."""
    h = harness()
    bob, _ = h.join("bob", address="198.51.100.7")
    alice = moderator(h)
    h.send(alice, type="mute", name="bob", minutes=10)
    h.say(bob, "hello?")
    frame = h.outbox.last(bob)
    assert frame["code"] == "muted" and frame["retry_after"] == 600
    renamed, _ = h.join("bobby", address="198.51.100.7")
    h.say(renamed, "me again")
    assert last_error(h, renamed) == "muted"
    assert not h.history.appended
    h.wall += 600_000  # mutes end on the wall clock, which a restart keeps
    h.say(bob, "back")
    assert len(h.history.appended) == 1


def test_lock_slow_and_mutes_are_stored_and_restored() -> None:
    """What a moderator sets is saved with the history and taken back by a new engine."""
    h = harness()
    h.join("bob", address="198.51.100.7")
    alice = moderator(h)
    h.send(alice, type="lock", locked=True)
    h.send(alice, type="slow", seconds=30)
    h.send(alice, type="mute", name="bob", minutes=10)
    saved = h.history.rules
    assert saved == {
        "lobby": {
            "locked": True,
            "slow": 30,
            "muted": {"bob": h.wall + 600_000, "198.51.100.7": h.wall + 600_000},
            "deleted": [],
            "cleared": 0,
        }
    }
    again = harness()
    again.history.rules = saved
    again.wall = h.wall
    asyncio.run(again.chat.moderation.load())
    bob, _ = again.join("bob", address="198.51.100.8")
    again.say(bob, "still muted?")
    assert last_error(again, bob) == "muted"
    carol, _ = again.join("carol", address="198.51.100.9")
    again.say(carol, "locked?")
    assert last_error(again, carol) == "room_locked"
    # Mutes that ended are forgotten (and the store told) by the periodic expiry.
    again.wall += 600_000
    asyncio.run(again.chat.expire())
    assert again.history.rules["lobby"]["muted"] == {}
    assert again.history.rules["lobby"]["locked"] is True


def test_a_page_away_during_deletions_is_told_when_it_resumes() -> None:
    """A resumed welcome lists deleted ids up to its cursor and the last clear."""
    h = harness(history=stored(5), last_id=5)
    alice = moderator(h)
    h.send(alice, type="delete", id=2)
    h.send(alice, type="delete", id=5)
    _, welcome = h.join("bob", since=4)
    assert welcome["resumed"] is True and welcome["deleted"] == [2]
    assert "cleared" not in welcome
    _, fresh = h.join("carol")
    assert "deleted" not in fresh  # a fresh page has nothing to take away
    h.send(alice, type="clear")
    _, welcome = h.join("dave", since=3)
    assert welcome["cleared"] == 5 and "deleted" not in welcome
    assert h.history.rules["lobby"]["cleared"] == 5  # kept across restarts too


def test_malformed_stored_rules_are_skipped() -> None:
    """A damaged or hand-edited value does not stop the daemon: the room starts unlocked."""
    assert rules_from_json(["not", "a", "mapping"]) == {}
    rules = rules_from_json(
        {"lobby": {"locked": "yes", "slow": True, "muted": {"bob": "soon", "eve": 5}}, 7: {}}
    )
    assert rules["lobby"] == RoomRules(locked=False, slow=0, muted={"eve": 5})
    assert list(rules) == ["lobby"]


def test_mute_zero_lifts_it() -> None:
    """mute with minutes 0 lifts a mute."""
    h = harness()
    bob, _ = h.join("bob")
    alice = moderator(h)
    h.send(alice, type="mute", name="bob", minutes=10)
    h.send(alice, type="mute", name="bob", minutes=0)
    h.say(bob, "free")
    assert len(h.history.appended) == 1


def test_lock_lets_only_moderators_post() -> None:
    """lock: everyone gets the room frame; others get room_locked, moderators post."""
    h = harness()
    bob, _ = h.join("bob")
    alice = moderator(h)
    h.send(alice, type="lock", locked=True)
    assert h.outbox.last(bob) == {"type": "room", "locked": True, "slow": 0}
    h.say(bob, "hi")
    assert last_error(h, bob) == "room_locked"
    h.say(alice, "announcement")
    assert [e.message.text for e in h.history.appended] == ["announcement"]
    _, welcome = h.join("carol")
    assert welcome["locked"] is True
    h.send(alice, type="lock", locked="yes")
    assert last_error(h, alice) == "bad_frame"
    h.send(alice, type="lock", locked=False)
    h.say(bob, "hi")
    assert len(h.history.appended) == 2


def test_slow_mode_allows_one_message_per_person_per_period() -> None:
    """slow 30: a second message within 30 s is rate_limited, with the wait."""
    h = harness()
    bob, _ = h.join("bob", address="198.51.100.7")
    alice = moderator(h)
    h.send(alice, type="slow", seconds=30)
    assert h.outbox.last(bob) == {"type": "room", "locked": False, "slow": 30}
    h.say(bob, "one")
    h.clock.now += 10
    h.say(bob, "two")
    frame = h.outbox.last(bob)
    assert frame["code"] == "rate_limited" and frame["retry_after"] == 20
    h.say(alice, "a")
    h.say(alice, "b")  # moderators are not slowed
    h.clock.now += 20
    h.say(bob, "three")
    assert [e.message.text for e in h.history.appended] == ["one", "a", "b", "three"]


@pytest.mark.parametrize("seconds", [-1, 3601, "5", None])
def test_bad_slow_changes_nothing(seconds: Any) -> None:
    """slow with seconds out of range or not a whole number: bad_seconds."""
    h = harness()
    alice = moderator(h)
    h.send(alice, type="slow", seconds=seconds)
    assert last_error(h, alice) == "bad_seconds"
    assert h.chat.moderation.room_rules(h.room).slow == 0


# The legacy dialect.


@pytest.mark.parametrize("name", ["alice", "ＡＬＩＣＥ", "bob"])
def test_legacy_cannot_take_a_moderator_or_online_name(name: str) -> None:
    """An echo-protocol frame under a moderator's name or an online v1 name: name_reserved."""
    h = harness()
    h.join("bob")
    legacy = h.connect(LEGACY)
    h.send(legacy, name=name, avatar="", message="hi")
    assert errors(h.outbox.frames(legacy)) == ["name_reserved"]
    assert not h.history.appended
    h.send(legacy, name="dave", avatar="", message="hi")
    assert len(h.history.appended) == 1


# The per-address rate limit.


def test_connections_of_one_address_share_a_rate() -> None:
    """rate_per_address bounds all connections of an address together; others are apart."""
    h = Harness(config=ChatConfig(rate_per_address=3))
    first, _ = h.join("one", address="192.0.2.1")
    second, _ = h.join("two", address="192.0.2.1")
    elsewhere, _ = h.join("three", address="192.0.2.2")
    for member in (first, first, second):
        h.say(member, "x")
    h.say(second, "too many")
    assert last_error(h, second) == "rate_limited"
    h.say(elsewhere, "fine")
    assert len(h.history.appended) == 4
    # A refused message spends no token of the member's own bucket.
    assert second.bucket is not None and second.bucket.tokens == 9
