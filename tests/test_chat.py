"""The chat engine with plain calls: a fake outbox, a fake history and fake clocks.

No socket, no database, no event loop except where the engine itself awaits
(``load_rooms``, ``expire``): each test drives frames in, decides when the
history commits or fails, and reads the frames the engine queued.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from pichat.bans import Ban
from pichat.chat import Chat, ChatConfig, Dialect, Member
from pichat.history import Deletion, Entry, HistoryListener, Loaded, LogEntry
from pichat.legacy import LEGACY
from pichat.password_guard import Verifier, verify_now
from pichat.presence import PRESENCE_BUDGET, tick_for
from pichat.protocol import Frame, Limits, Message
from pichat.retention import Cut, Retention
from pichat.room import Room
from pichat.sites import Site
from pichat.v1 import V1

EPOCH = "epoch-1"
NOW_MS = 1_795_677_426_123
DAY_MS = 86_400_000
SITE = Site("default", (), Path("/srv/pichat"), "lobby", "The lobby", frozenset())


# Fakes.


def decode(frame: Frame) -> Any:
    """The JSON payload of one unmasked, unfragmented WebSocket text frame."""
    assert isinstance(frame, bytes)
    assert frame[0] == 0x81, "FIN and the text opcode"
    assert frame[1] & 0x80 == 0, "server frames are never masked"
    length, offset = frame[1] & 0x7F, 2
    if length == 126:
        length, offset = int.from_bytes(frame[2:4], "big"), 4
    elif length == 127:
        length, offset = int.from_bytes(frame[2:10], "big"), 10
    payload = frame[offset:]
    assert len(payload) == length, "the frame is exactly header + payload"
    return json.loads(payload)


class FakeOutbox:
    """Records every frame per member, and every broadcast call as it was made."""

    def __init__(self) -> None:
        self.log: list[tuple[Member, Frame]] = []
        self.broadcasts: list[tuple[list[Member], Frame]] = []
        self.closed: list[tuple[Member, int, str]] = []

    def send(self, member: Member, frame: Frame) -> None:
        self.log.append((member, frame))

    def broadcast(self, members: Iterable[Member], frame: Frame) -> None:
        audience = list(members)
        self.broadcasts.append((audience, frame))
        self.log.extend((member, frame) for member in audience)

    def close(self, member: Member, code: int, reason: str) -> None:
        self.closed.append((member, code, reason))

    def frames(self, member: Member) -> list[Any]:
        """Everything queued for ``member``, decoded, oldest first."""
        return [decode(frame) for to, frame in self.log if to is member]

    def last(self, member: Member) -> Any:
        """The last frame queued for ``member``, decoded."""
        frames = self.frames(member)
        assert frames, "nothing was sent to this member"
        return frames[-1]

    def clear(self) -> None:
        self.log.clear()
        self.broadcasts.clear()


class FakeHistory:
    """Records appends and trims; the test decides what loads return and when writes end."""

    def __init__(self, rooms: dict[str, Loaded] | None = None) -> None:
        self.rooms = rooms or {}
        self.loads: list[tuple[str, int]] = []
        self.appended: list[Entry] = []
        self.trimmed: list[tuple[str, Cut]] = []
        self.trim_result = 0
        self.deletions: list[Deletion] = []
        self.bans: list[Ban] = []
        self.rules: object = None
        self.log: list[LogEntry] = []
        self.listener: HistoryListener | None = None
        self.healthy = True

    def start(self, listener: HistoryListener) -> None:
        self.listener = listener

    async def load(self, room: str, limit: int) -> Loaded:
        self.loads.append((room, limit))
        return self.rooms.get(room, Loaded([], 0, f"new-{room}"))

    def append(self, entry: Entry) -> None:
        self.appended.append(entry)

    async def messages_after(self, room: str, after: int, limit: int) -> list[Message]:
        raise AssertionError("the engine resumes from memory")

    async def trim(self, room: str, cut: Cut) -> int:
        self.trimmed.append((room, cut))
        return self.trim_result

    def delete(self, deletion: Deletion) -> None:
        self.deletions.append(deletion)

    async def load_bans(self) -> list[Ban]:
        return list(self.bans)

    def save_bans(self, bans: list[Ban]) -> None:
        self.bans = list(bans)

    async def load_rules(self) -> object:
        return self.rules

    def save_rules(self, rules: dict[str, Any]) -> None:
        self.rules = json.loads(json.dumps(rules))  # stored as JSON: no shared objects

    def record(self, entry: LogEntry) -> None:
        self.log.append(entry)

    async def load_log(self, since_ms: int, limit: int) -> list[LogEntry]:
        return [e for e in self.log if e.ms >= since_ms][-limit:]

    def take(self) -> list[Entry]:
        """What was appended since the last take: the next batch to commit or fail."""
        batch, self.appended = self.appended, []
        return batch


class Ticker:
    """The presence tick, run by hand: ``schedule`` records, :meth:`run` calls."""

    def __init__(self) -> None:
        self.armed: list[tuple[float, Callable[[], None]]] = []

    def __call__(self, delay: float, callback: Callable[[], None]) -> Ticker.Handle:
        entry = (delay, callback)
        self.armed.append(entry)
        return Ticker.Handle(self, entry)

    def run(self) -> None:
        armed, self.armed = self.armed, []
        for _, callback in armed:
            callback()

    class Handle:
        def __init__(self, ticker: Ticker, entry: tuple[float, Callable[[], None]]) -> None:
            self.ticker, self.entry = ticker, entry

        def cancel(self) -> None:
            if self.entry in self.ticker.armed:
                self.ticker.armed.remove(self.entry)


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Harness:
    """A chat engine with one room, its fakes, and the calls a connection makes."""

    def __init__(
        self,
        config: ChatConfig | None = None,
        history: Iterable[Message] = (),
        last_id: int = 0,
        verifier: Verifier = verify_now,
    ) -> None:
        self.outbox = FakeOutbox()
        self.history = FakeHistory()
        self.clock = Clock()
        self.wall = NOW_MS
        self.ticker = Ticker()
        self.chat: Chat[Member] = Chat(
            self.outbox,
            self.history,
            config or ChatConfig(),
            monotonic=self.clock,
            wall_ms=lambda: self.wall,
            verifier=verifier,
            schedule=self.ticker,
        )
        self.history.start(self.chat)
        self.room: Room[Member] = Room("lobby", EPOCH, history, last_id)
        self.chat.rooms["lobby"] = self.room

    def connect(self, dialect: Dialect = V1, site: Site = SITE, address: str = "") -> Member:
        """A new open connection in ``dialect``, from ``address``."""
        member = Member(site, dialect, address)
        self.chat.opened(member)
        return member

    def send(self, member: Member, **fields: Any) -> None:
        """A JSON text frame from ``member``."""
        self.chat.received(member, json.dumps(fields))

    def join(self, name: str, address: str = "", **fields: Any) -> tuple[Member, Any]:
        """A new pichat.v1 connection that joins; returns it and its welcome."""
        member = self.connect(address=address)
        self.send(member, type="join", name=name, **fields)
        welcome = self.outbox.last(member)
        assert welcome["type"] == "welcome", welcome
        return member, welcome

    def tick(self) -> None:
        """The presence tick: each room's pending joins and leaves go out."""
        self.ticker.run()

    def say(self, member: Member, text: str) -> None:
        self.send(member, type="say", text=text)

    def commit(self) -> list[Entry]:
        """The history commits everything appended so far."""
        batch = self.history.take()
        self.chat.committed(batch)
        return batch

    def fail(self) -> list[Entry]:
        """The history fails to store everything appended so far."""
        batch = self.history.take()
        self.chat.failed(batch)
        return batch


def stored(count: int, start: int = 1, ms: int = NOW_MS - 60_000) -> list[Message]:
    """``count`` messages with ids from ``start``, one a second."""
    return [
        Message(i, ms + 1000 * (i - start), "bob", "", f"m{i}") for i in range(start, start + count)
    ]


def ids(messages: list[Any]) -> list[int]:
    """The ids of decoded messages."""
    return [m["id"] for m in messages]


def messages(frames: list[Any]) -> list[Any]:
    """The pichat.v1 message frames among decoded frames."""
    return [f for f in frames if isinstance(f, dict) and f.get("type") == "message"]


def errors(frames: list[Any]) -> list[str]:
    """The codes of the error frames among decoded frames."""
    return [f["code"] for f in frames if isinstance(f, dict) and f.get("type") == "error"]


# Joining.


def test_join_gets_a_welcome_with_history() -> None:
    """join is answered with the whole documented welcome, history replayed oldest first."""
    history = stored(3)
    h = Harness(history=history)
    member, welcome = h.join("alice", avatar="https://example.org/a.png")
    assert welcome == {
        "type": "welcome",
        "you": {"name": "alice", "avatar": "https://example.org/a.png"},
        "room": "lobby",
        "title": "The lobby",
        "limits": Limits().as_dict(),
        "online": [{"name": "alice", "avatar": "https://example.org/a.png"}],
        "count": 1,
        "online_more": False,
        "resumed": False,
        "gap": False,
        "epoch": EPOCH,
        "more": False,
        "locked": False,
        "slow": 0,
        "history": [m.as_v1() for m in history],
    }
    assert h.outbox.frames(member) == [welcome]
    assert member.name == "alice" and member.bucket is not None


def test_fresh_join_replays_the_last_messages_within_count_and_bytes() -> None:
    """A fresh join replays at most replay messages and replay_bytes bytes, the newest."""
    history = stored(10)
    _, welcome = Harness(ChatConfig(replay=4), history=history).join("a")
    assert ids(welcome["history"]) == [7, 8, 9, 10]
    budget = sum(len(m.v1_json()) for m in history[-2:])
    _, welcome = Harness(ChatConfig(replay_bytes=budget), history=history).join("a")
    assert ids(welcome["history"]) == [9, 10]
    assert welcome["more"] is False


def test_join_tells_everyone_online_at_the_tick() -> None:
    """A join is told at the next tick, to every member (joiner too), with the new count."""
    h = Harness()
    bob, _ = h.join("bob")
    carol, _ = h.join("carol")
    listener = h.connect(LEGACY)
    waiting = h.connect()  # open but not joined
    h.tick()
    h.outbox.clear()
    alice, welcome = h.join("alice", avatar="https://example.org/a.png")
    assert h.outbox.frames(bob) == []  # not before the tick
    h.tick()
    presence = {
        "type": "presence",
        "joined": [{"name": "alice", "avatar": "https://example.org/a.png"}],
        "left": [],
        "count": 3,
    }
    assert h.outbox.frames(bob) == [presence]
    assert h.outbox.frames(carol) == [presence]
    assert h.outbox.frames(alice) == [welcome, presence]
    assert h.outbox.frames(listener) == [] and h.outbox.frames(waiting) == []
    assert [m["name"] for m in welcome["online"]] == ["bob", "carol", "alice"]
    assert welcome["count"] == 3


def test_a_tick_coalesces_every_join_and_leave_into_one_frame() -> None:
    """Joins and leaves between two ticks make one frame, encoded once, to every member."""
    h = Harness()
    old, _ = h.join("old")
    bob, _ = h.join("bob")
    h.tick()
    h.outbox.clear()
    ada, _ = h.join("ada")
    h.chat.closed(old)
    eve, _ = h.join("eve")
    h.chat.closed(eve)  # joined and left within the tick
    cy, _ = h.join("old")  # the name old left is free again
    assert len(h.ticker.armed) == 1, "one tick armed for the whole burst"
    h.outbox.clear()
    h.tick()
    presence = {
        "type": "presence",
        "joined": [{"name": "ada", "avatar": ""}, {"name": "old", "avatar": ""}],
        "left": ["old", "eve"],
        "count": 3,
    }
    assert len(h.outbox.broadcasts) == 1
    audience, _ = h.outbox.broadcasts[0]
    assert set(audience) == {bob, ada, cy}
    assert h.outbox.frames(bob) == [presence]
    h.tick()
    assert h.outbox.frames(bob) == [presence], "an idle tick sends nothing"


def apply_presence(names: set[str], frame: Any) -> set[str]:
    """What a page does with a presence frame: ``left`` first, then ``joined``."""
    return (names - set(frame["left"])) | {p["name"] for p in frame["joined"]}


def test_presence_brings_every_view_of_the_tick_up_to_date() -> None:
    """Whenever in the tick a member joined, welcome + the tick's frame = who is online."""
    h = Harness()
    a, _ = h.join("a")
    b, _ = h.join("b")
    h.tick()
    views: dict[Member, set[str]] = {a: {"a", "b"}, b: {"a", "b"}}
    members = {"a": a, "b": b}

    def join(name: str) -> None:
        member, welcome = h.join(name)
        members[welcome["you"]["name"]] = member
        views[member] = {p["name"] for p in welcome["online"]}

    def leave(name: str) -> None:
        h.chat.closed(members.pop(name))

    join("c")
    leave("a")
    join("a")  # someone else, under the name that just left
    join("d")
    leave("c")  # joined and left within the tick: d saw it in its welcome
    leave("b")
    h.outbox.clear()
    h.tick()
    online = {name for name, _ in h.room.online()}
    assert online == {"a", "d"}
    for member in members.values():
        (frame,) = h.outbox.frames(member)
        assert apply_presence(views[member], frame) == online


def test_welcome_lists_at_most_100_with_the_exact_count() -> None:
    """Past 100 online a welcome lists the first 100 (join order), the count, online_more."""
    h = Harness()
    for number in range(150):
        h.join(f"p{number}")
    late, welcome = h.join("late")
    assert [p["name"] for p in welcome["online"]] == [f"p{n}" for n in range(100)]
    assert welcome["count"] == 151 and welcome["online_more"] is True
    h.send(late, type="online", after=100)
    page = h.outbox.last(late)
    assert page["type"] == "online" and page["after"] == 100
    assert [p["name"] for p in page["online"]] == [f"p{n}" for n in range(100, 150)] + ["late"]
    assert (page["count"], page["more"]) == (151, False)
    h.send(late, type="online", after=0)
    first = h.outbox.last(late)
    assert len(first["online"]) == 100 and first["more"] is True


def test_welcome_listing_follows_leaves_among_the_first_hundred() -> None:
    """The shared listing is rebuilt when someone it shows leaves."""
    h = Harness()
    first, _ = h.join("first")
    for number in range(120):
        h.join(f"p{number}")
    _, before = h.join("x")
    h.chat.closed(first)
    _, after = h.join("y")
    assert before["online"][0]["name"] == "first"
    assert after["online"][0]["name"] == "p0" and len(after["online"]) == 100
    assert after["count"] == 122


@pytest.mark.parametrize("after", [-1, 1.5, "3", True, None])
def test_online_page_needs_a_count(after: Any) -> None:
    """``online`` with a bad ``after`` is a bad_after error."""
    h = Harness()
    alice, _ = h.join("alice")
    h.send(alice, type="online", after=after)
    assert h.outbox.last(alice)["code"] == "bad_after"


def test_online_page_before_join_is_refused() -> None:
    """``online`` before ``join`` is not_joined: the list is for members."""
    h = Harness()
    member = h.connect()
    h.send(member, type="online")
    assert h.outbox.last(member)["code"] == "not_joined"


def test_shutdown_cancels_pending_presence() -> None:
    """At shutdown what is pending is forgotten and no tick stays armed."""
    h = Harness()
    bob, _ = h.join("bob")
    h.join("carol")
    h.chat.closing = True
    h.chat.presence.cancel()
    assert h.ticker.armed == []
    h.chat.closed(bob)
    assert h.ticker.armed == []
    h.join("late")  # still admitted while connections drain, but no tick is armed
    assert h.ticker.armed == []


def test_taken_names_get_a_suffix() -> None:
    """Two people online never share a name: the second alice is 'alice (2)'."""
    h = Harness()
    h.join("alice")
    second, welcome = h.join("ALICE")
    assert welcome["you"]["name"] == "ALICE (2)"
    assert second.name == "ALICE (2)"
    assert [m["name"] for m in welcome["online"]] == ["alice", "ALICE (2)"]


def test_second_join_is_already_joined() -> None:
    """A second join on one connection is an already_joined error and changes nothing."""
    h = Harness()
    alice, _ = h.join("alice")
    h.send(alice, type="join", name="mallory")
    assert h.outbox.last(alice)["code"] == "already_joined"
    assert alice.name == "alice"
    assert h.room.online() == [("alice", "")]


def test_say_before_join_is_not_joined() -> None:
    """say before join is refused with not_joined and nothing is stored."""
    h = Harness()
    member = h.connect()
    h.say(member, "hello")
    assert errors(h.outbox.frames(member)) == ["not_joined"]
    assert h.history.appended == []


def test_history_before_join_is_not_joined() -> None:
    """A history request before join is refused with not_joined."""
    h = Harness(history=stored(3))
    member = h.connect()
    h.send(member, type="history", after=0)
    assert errors(h.outbox.frames(member)) == ["not_joined"]


def test_bad_frames_are_error_frames_and_the_connection_goes_on() -> None:
    """A broken rule is answered with an error frame; the client can still join after."""
    h = Harness()
    member = h.connect()
    h.chat.received(member, "{nope")
    h.send(member, type="join", name="")
    h.send(member, type="shout")
    assert errors(h.outbox.frames(member)) == ["bad_json", "bad_name", "unknown_type"]
    h.send(member, type="join", name="alice")
    assert h.outbox.last(member)["type"] == "welcome"


@pytest.mark.parametrize("joined", [False, True])
def test_binary_frame_is_refused(joined: bool) -> None:
    """A binary frame is answered with binary_frame, before or after join."""
    h = Harness()
    member = h.join("alice")[0] if joined else h.connect()
    h.chat.received(member, b'{"type": "say", "text": "hi"}')
    assert h.outbox.last(member)["code"] == "binary_frame"
    assert h.history.appended == []


# Saying, committing, failing.


def test_say_appends_the_right_entry() -> None:
    """say appends one Entry: the room, the next id, the wall clock, the sender and the cut."""
    retention = Retention(max_messages=2, max_age_days=1)
    h = Harness(ChatConfig(retention=retention), history=stored(3))
    alice, _ = h.join("alice", avatar="https://example.org/a.png")
    h.say(alice, " hello\n")
    [entry] = h.history.appended
    assert (entry.room, entry.sender) == ("lobby", alice)
    message = entry.message
    assert (message.id, message.ms, message.name, message.avatar, message.text) == (
        4,
        NOW_MS,
        "alice",
        "https://example.org/a.png",
        " hello\n",
    )
    assert entry.cut == retention.cut(4, NOW_MS) == Cut(3, NOW_MS - DAY_MS)


def test_nothing_is_broadcast_before_commit() -> None:
    """A said message reaches nobody, sender included, until the history commits it."""
    h = Harness()
    alice, _ = h.join("alice")
    bob, _ = h.join("bob")
    h.outbox.clear()
    h.say(alice, "hello")
    assert h.outbox.log == []
    assert list(h.room.history) == []


def test_commit_broadcasts_to_every_member_each_dialect_encoded_once() -> None:
    """On commit every v1 member, sender included, and every legacy listener get the message.

    Each dialect's frame is built once, the very bytes cached on the message.
    """
    h = Harness()
    alice, _ = h.join("alice")
    bob, _ = h.join("bob")
    legacy = h.connect(LEGACY)
    waiting = h.connect()  # open, not joined: not in the room's audience yet
    h.outbox.clear()
    h.say(alice, "<b>hi</b> & bye")
    [entry] = h.commit()
    message = entry.message
    assert len(h.outbox.broadcasts) == 2
    by_audience = {tuple(members): frame for members, frame in h.outbox.broadcasts}
    v1_frame = by_audience[(alice, bob)]
    legacy_frame = by_audience[(legacy,)]
    assert v1_frame is message.v1_frame()
    assert legacy_frame is LEGACY.message_frame(message)
    assert decode(v1_frame) == message.as_v1()
    assert decode(v1_frame)["text"] == "<b>hi</b> & bye"
    assert decode(legacy_frame) == {
        "name": "alice",
        "avatar": "",
        "message": "&lt;b&gt;hi&lt;/b&gt; &amp; bye",
        "date": message.date,
    }
    assert h.outbox.frames(waiting) == []
    assert list(h.room.history) == [message]


def test_commit_applies_the_entry_cut_to_memory() -> None:
    """A commit trims the room's memory with the entry's retention cut."""
    h = Harness(ChatConfig(retention=Retention(max_messages=3)), history=stored(3))
    alice, _ = h.join("alice")
    h.say(alice, "one")
    h.say(alice, "two")
    h.commit()
    assert [m.id for m in h.room.history] == [3, 4, 5]


def test_commit_after_join_is_broadcast_and_not_in_the_welcome() -> None:
    """A message committed after someone joined reaches it live, not in its welcome."""
    h = Harness()
    alice, _ = h.join("alice")
    h.say(alice, "in flight")
    carol, welcome = h.join("carol")
    assert welcome["history"] == []
    h.commit()
    assert [m["text"] for m in messages(h.outbox.frames(carol))] == ["in flight"]


def test_commit_before_join_is_in_the_welcome_and_not_broadcast_to_it() -> None:
    """A message committed before someone joined is in its welcome and not sent again."""
    h = Harness()
    alice, _ = h.join("alice")
    h.say(alice, "earlier")
    h.commit()
    carol, welcome = h.join("carol")
    assert [m["text"] for m in welcome["history"]] == ["earlier"]
    assert messages(h.outbox.frames(carol)) == []


def test_failed_write_tells_only_the_sender() -> None:
    """A failed batch gives its sender an unavailable error; nothing is broadcast or kept."""
    h = Harness()
    alice, _ = h.join("alice")
    bob, _ = h.join("bob")
    legacy = h.connect(LEGACY)
    h.outbox.clear()
    h.say(alice, "lost")
    h.fail()
    assert errors(h.outbox.frames(alice)) == ["unavailable"]
    assert h.outbox.frames(alice)[0]["detail"]
    assert h.outbox.frames(bob) == [] and h.outbox.frames(legacy) == []
    assert list(h.room.history) == []


def test_failed_batch_tells_each_sender_once_per_message() -> None:
    """Every sender in a failed batch gets an error per lost message, legacy ones too."""
    h = Harness()
    alice, _ = h.join("alice")
    bob, _ = h.join("bob")
    legacy = h.connect(LEGACY)
    h.outbox.clear()
    h.say(alice, "one")
    h.say(bob, "two")
    h.say(alice, "three")
    h.send(legacy, name="old", message="four")
    batch = h.history.take()
    h.chat.failed([*batch, Entry("lobby", Message(99, 0, "x", "", "y"), None, Cut(1, 0))])
    assert errors(h.outbox.frames(alice)) == ["unavailable", "unavailable"]
    assert errors(h.outbox.frames(bob)) == ["unavailable"]
    assert errors(h.outbox.frames(legacy)) == ["unavailable"]


def test_a_failed_id_is_never_reused_and_resume_skips_it() -> None:
    """A failed message burns its id: the next one gets the next id and resume spans the hole."""
    h = Harness(history=stored(2))
    alice, _ = h.join("alice")
    h.say(alice, "lost")
    h.fail()
    h.say(alice, "kept")
    [entry] = h.commit()
    assert entry.message.id == 4
    _, welcome = h.join("bob", since=2)
    assert ids(welcome["history"]) == [4]
    assert (welcome["resumed"], welcome["gap"]) == (True, False)


def test_rate_limit_with_retry_after() -> None:
    """Over rate_messages per rate_window a say is rate_limited with retry_after; it recovers."""
    h = Harness(ChatConfig(limits=Limits(rate_messages=2, rate_window=10.0)))
    alice, _ = h.join("alice")
    h.say(alice, "one")
    h.say(alice, "two")
    h.say(alice, "three")
    error = h.outbox.last(alice)
    assert (error["code"], error["retry_after"]) == ("rate_limited", 5.0)
    assert [e.message.id for e in h.history.appended] == [1, 2]  # no id spent on a refusal
    h.clock.now += 4.9
    h.say(alice, "still too soon")
    assert 0.1 <= h.outbox.last(alice)["retry_after"] <= 0.102  # rounded up, never down
    h.clock.now += 0.1
    h.say(alice, "four")
    assert [e.message.text for e in h.history.appended] == ["one", "two", "four"]
    assert h.history.appended[-1].message.id == 3


def test_rate_limit_is_per_member() -> None:
    """One member's burst does not limit another."""
    h = Harness(ChatConfig(limits=Limits(rate_messages=1, rate_window=10.0)))
    alice, _ = h.join("alice")
    bob, _ = h.join("bob")
    h.say(alice, "one")
    h.say(alice, "two")
    h.say(bob, "three")
    assert errors(h.outbox.frames(alice)) == ["rate_limited"]
    assert errors(h.outbox.frames(bob)) == []


def test_configure_reconfigures_every_bucket() -> None:
    """configure() gives open members the new rate without refunding their burst."""
    h = Harness(ChatConfig(limits=Limits(rate_messages=2, rate_window=10.0)))
    alice, _ = h.join("alice")
    legacy = h.connect(LEGACY)
    waiting = h.connect()
    for _ in range(2):
        h.say(alice, "burst")
        h.send(legacy, name="old", message="burst")
    new = ChatConfig(limits=Limits(rate_messages=10, rate_window=1.0))
    h.chat.configure(new)
    assert h.chat.config is new
    for member in (alice, legacy):
        assert member.bucket is not None
        assert (member.bucket.capacity, member.bucket.window) == (10, 1.0)
    assert waiting.bucket is None
    h.say(alice, "too soon")
    assert h.outbox.last(alice)["code"] == "rate_limited"  # no tokens refunded
    h.clock.now += 0.1  # one token at the new rate (it would be 0.02 at the old one)
    h.say(alice, "again")
    h.send(legacy, name="old", message="again")
    assert [e.message.text for e in h.history.appended][-2:] == ["again", "again"]
    _, welcome = h.join("bob")
    assert welcome["limits"]["rate_messages"] == 10


# Resuming.


def test_resume_from_the_last_id_gets_nothing() -> None:
    """A client that saw the last message resumes with an empty history and no gap."""
    _, welcome = Harness(history=stored(5)).join("alice", since=5, epoch=EPOCH)
    assert welcome["history"] == []
    assert (welcome["resumed"], welcome["gap"], welcome["more"]) == (True, False, False)


def test_resume_from_the_middle_gets_exactly_the_rest() -> None:
    """since in the middle gives exactly the messages after it, oldest first."""
    _, welcome = Harness(history=stored(10)).join("alice", since=6)
    assert ids(welcome["history"]) == [7, 8, 9, 10]
    assert (welcome["resumed"], welcome["gap"], welcome["more"]) == (True, False, False)


def test_resume_after_retention_reports_a_gap() -> None:
    """A cursor before the oldest kept message resumes from the oldest kept, with a gap."""
    _, welcome = Harness(history=stored(5, start=6), last_id=10).join("alice", since=2)
    assert ids(welcome["history"]) == [6, 7, 8, 9, 10]
    assert (welcome["resumed"], welcome["gap"]) == (True, True)


def page_through(
    h: Harness, member: Member, welcome: Any, since: int = 0
) -> tuple[list[int], list[Any]]:
    """Ask for history pages until more is false; returns every id and the pages."""
    got = ids(welcome["history"])
    pages: list[Any] = []
    more = welcome["more"]
    while more:
        assert len(pages) < 100, "paging does not end"
        after = got[-1] if got else since
        h.send(member, type="history", after=after)
        page = h.outbox.last(member)
        assert (page["type"], page["after"]) == ("history", after)
        pages.append(page)
        got += ids(page["messages"])
        more = page["more"]
    return got, pages


def test_long_resume_pages_until_more_is_false() -> None:
    """A resume longer than one page continues with history frames: no duplicate, no gap."""
    h = Harness(ChatConfig(replay=3), history=stored(10))
    alice, welcome = h.join("alice", since=0)
    assert ids(welcome["history"]) == [1, 2, 3]
    assert (welcome["resumed"], welcome["gap"], welcome["more"]) == (True, False, True)
    got, pages = page_through(h, alice, welcome)
    assert got == list(range(1, 11))
    assert [ids(p["messages"]) for p in pages] == [[4, 5, 6], [7, 8, 9], [10]]
    assert [p["more"] for p in pages] == [True, True, False]
    assert not any(p["gap"] for p in pages)


def test_pages_respect_the_byte_budget() -> None:
    """Pages hold at most replay_bytes (or one message) and still cover everything."""
    history = stored(20)
    budget = sum(len(m.v1_json()) for m in history[:3])
    h = Harness(ChatConfig(replay_bytes=budget), history=history)
    alice, welcome = h.join("alice", since=0)
    assert len(welcome["history"]) == 3 and welcome["more"] is True
    got, pages = page_through(h, alice, welcome)
    assert got == list(range(1, 21))
    assert all(1 <= len(p["messages"]) <= 3 for p in pages)


def test_history_page_after_retention_reports_a_gap() -> None:
    """A history request after an id retention already dropped says gap."""
    h = Harness(history=stored(5, start=6), last_id=10)
    alice, _ = h.join("alice")
    h.send(alice, type="history", after=1)
    page = h.outbox.last(alice)
    assert ids(page["messages"]) == [6, 7, 8, 9, 10]
    assert (page["gap"], page["more"]) == (True, False)


def test_message_committed_while_paging_is_not_repeated() -> None:
    """A message committed during a long resume arrives once: live, not again in a page."""
    h = Harness(ChatConfig(replay=3), history=stored(6))
    alice, welcome = h.join("alice", since=0)
    bob, _ = h.join("bob")
    h.say(bob, "live")
    h.commit()
    got, _ = page_through(h, alice, welcome)
    live = ids(messages(h.outbox.frames(alice)))
    assert live == [7]
    assert sorted(got + live) == list(range(1, 8))  # each id exactly once


def test_resume_with_zero_replay_still_advances() -> None:
    """Even with history_replay 0, paging a resume advances to the end."""
    h = Harness(ChatConfig(replay=0), history=stored(3))
    alice, welcome = h.join("alice", since=0)
    got, _ = page_through(h, alice, welcome)
    assert got == [1, 2, 3]


def test_resume_while_the_first_message_is_in_flight_is_no_gap() -> None:
    """A resume in an empty room while its first message is being stored has no gap."""
    h = Harness()
    alice, _ = h.join("alice")
    h.say(alice, "first")
    bob, welcome = h.join("bob", since=0, epoch=EPOCH)
    assert (welcome["resumed"], welcome["gap"]) == (True, False)
    h.commit()
    assert ids(messages(h.outbox.frames(bob))) == [1]


def test_since_beyond_the_last_id_is_a_gap_with_a_fresh_replay() -> None:
    """A cursor from the future (another history) is not resumed: gap and the usual replay."""
    h = Harness(ChatConfig(replay=3), history=stored(10))
    _, welcome = h.join("alice", since=11)
    assert ids(welcome["history"]) == [8, 9, 10]
    assert (welcome["resumed"], welcome["gap"], welcome["more"]) == (False, True, False)


def test_epoch_mismatch_is_a_gap_with_a_fresh_replay() -> None:
    """A cursor from another epoch is not resumed, even when its id exists here."""
    h = Harness(ChatConfig(replay=3), history=stored(10))
    _, welcome = h.join("alice", since=4, epoch="another-history")
    assert ids(welcome["history"]) == [8, 9, 10]
    assert (welcome["resumed"], welcome["gap"], welcome["more"]) == (False, True, False)
    assert welcome["epoch"] == EPOCH


def test_matching_epoch_resumes() -> None:
    """A cursor with this room's epoch resumes normally, as one without an epoch does."""
    h = Harness(ChatConfig(replay=3), history=stored(10))
    _, with_epoch = h.join("alice", since=4, epoch=EPOCH)
    _, without = h.join("bob", since=4)
    for welcome in (with_epoch, without):
        assert ids(welcome["history"]) == [5, 6, 7]
        assert (welcome["resumed"], welcome["gap"], welcome["more"]) == (True, False, True)


def test_epoch_without_since_is_a_fresh_join() -> None:
    """An epoch without a cursor changes nothing: a fresh join, no gap."""
    _, welcome = Harness(history=stored(2)).join("alice", epoch="whatever")
    assert (welcome["resumed"], welcome["gap"]) == (False, False)
    assert ids(welcome["history"]) == [1, 2]


# Leaving.


def test_close_tells_the_others_with_the_count() -> None:
    """A member that leaves is announced at the tick to those still online, with the count."""
    h = Harness()
    alice, _ = h.join("alice", avatar="https://example.org/a.png")
    bob, _ = h.join("bob")
    carol, _ = h.join("carol")
    h.tick()
    h.outbox.clear()
    h.chat.closed(alice)
    h.tick()
    leave = {"type": "presence", "joined": [], "left": ["alice"], "count": 2}
    assert h.outbox.frames(bob) == [leave] and h.outbox.frames(carol) == [leave]
    assert h.outbox.frames(alice) == []
    assert h.chat.online() == {"lobby": 2}
    assert h.join("alice")[1]["you"]["name"] == "alice"  # the name is free again


def test_closed_member_receives_nothing_more() -> None:
    """After close a member is in no audience: later messages do not reach it."""
    h = Harness()
    alice, _ = h.join("alice")
    bob, _ = h.join("bob")
    legacy = h.connect(LEGACY)
    h.chat.closed(bob)
    h.chat.closed(legacy)
    h.outbox.clear()
    h.say(alice, "hello")
    h.commit()
    assert h.outbox.frames(bob) == [] and h.outbox.frames(legacy) == []
    assert messages(h.outbox.frames(alice))[0]["text"] == "hello"


def test_close_without_join_is_silent() -> None:
    """A connection that never joined (or a legacy listener) leaves without presence."""
    h = Harness()
    h.join("alice")
    waiting, legacy = h.connect(), h.connect(LEGACY)
    h.outbox.clear()
    h.chat.closed(waiting)
    h.chat.closed(legacy)
    assert h.outbox.log == []


def test_close_twice_and_close_before_open_are_harmless() -> None:
    """closed() on a connection already closed, or never opened, does nothing."""
    h = Harness()
    alice, _ = h.join("alice")
    bob, _ = h.join("bob")
    h.chat.closed(bob)
    h.outbox.clear()
    h.chat.closed(bob)
    h.chat.closed(Member(SITE, V1))
    assert h.outbox.log == []


def test_closing_suppresses_presence() -> None:
    """At shutdown (closing set) members leave without presence frames."""
    h = Harness()
    alice, _ = h.join("alice")
    bob, _ = h.join("bob")
    h.outbox.clear()
    h.chat.closing = True
    h.chat.closed(alice)
    h.chat.closed(bob)
    assert h.outbox.log == []
    assert h.chat.online() == {"lobby": 0}


# Rooms and retention.


async def test_load_rooms_loads_each_room_once() -> None:
    """load_rooms() builds each named room from the history once, with its epoch and last id."""
    h = Harness(ChatConfig(retention=Retention(max_messages=50)))
    del h.chat.rooms["lobby"]
    h.history.rooms["lobby"] = Loaded(stored(3, start=8), 12, "loaded-epoch")
    await h.chat.load_rooms(["lobby"])
    await h.chat.load_rooms(["lobby", "other"])
    assert h.history.loads == [("lobby", 50), ("other", 50)]
    lobby = h.chat.rooms["lobby"]
    assert (lobby.name, lobby.epoch, lobby.last_id) == ("lobby", "loaded-epoch", 12)
    assert [m.id for m in lobby.history] == [8, 9, 10]
    assert h.chat.rooms["other"].epoch == "new-other"
    alice, welcome = h.join("alice")
    assert welcome["epoch"] == "loaded-epoch"
    h.say(alice, "next")
    assert h.history.appended[0].message.id == 13


async def test_expire_trims_memory_and_history_with_the_same_cut() -> None:
    """expire() applies one retention cut per room to its memory and to the history."""
    retention = Retention(max_messages=3)
    h = Harness(ChatConfig(retention=retention), history=stored(10))
    h.chat.rooms["other"] = Room("other", "e2", stored(2), 2)
    h.history.trim_result = 7
    await h.chat.expire()
    assert h.history.trimmed == [
        ("lobby", retention.cut(10, NOW_MS)),
        ("other", retention.cut(2, NOW_MS)),
    ]
    assert h.history.trimmed[0][1] == Cut(8, -(2**63))
    assert [m.id for m in h.room.history] == [8, 9, 10]
    assert [m.id for m in h.chat.rooms["other"].history] == [1, 2]


async def test_expire_by_age() -> None:
    """With max_age_days, expire() drops messages older than now minus the age."""
    retention = Retention(max_messages=100, max_age_days=1)
    old = Message(1, NOW_MS - 2 * DAY_MS, "bob", "", "old")
    boundary = Message(2, NOW_MS - DAY_MS, "bob", "", "boundary")
    h = Harness(ChatConfig(retention=retention), history=[old, boundary])
    await h.chat.expire()
    assert h.history.trimmed == [("lobby", Cut(1, NOW_MS - DAY_MS))]
    assert list(h.room.history) == [boundary]
    h.wall += 1
    await h.chat.expire()
    assert list(h.room.history) == []
    assert h.room.last_id == 2


def test_online_counts_members_per_room() -> None:
    """online() counts joined members per room; listeners are not online."""
    h = Harness()
    h.chat.rooms["other"] = Room("other", "e2")
    h.join("alice")
    h.join("bob")
    h.connect(LEGACY)
    h.connect()
    assert h.chat.online() == {"lobby": 2, "other": 0}


def test_sites_pick_their_room() -> None:
    """A connection goes to its site's room; rooms do not hear each other."""
    h = Harness()
    h.chat.rooms["other"] = Room("other", "e2")
    other_site = Site("other", ("other.example",), Path("/srv/o"), "other", "Other", frozenset())
    alice, _ = h.join("alice")
    elsewhere = h.connect(site=other_site)
    h.send(elsewhere, type="join", name="alice")
    welcome = h.outbox.last(elsewhere)
    assert (welcome["room"], welcome["title"], welcome["you"]["name"]) == (
        "other",
        "Other",
        "alice",
    )
    h.outbox.clear()
    h.say(elsewhere, "hi other")
    [entry] = h.commit()
    assert entry.room == "other"
    assert h.outbox.frames(alice) == []
    assert messages(h.outbox.frames(elsewhere))[0]["text"] == "hi other"


# The seed tutorial's dialect.


def test_legacy_open_sends_the_history_array_and_listens() -> None:
    """An echo-protocol connection gets the escaped history array at once, then messages."""
    history = [Message(1, NOW_MS, "<b>", "", "a & b"), Message(2, NOW_MS, "bob", "", "hi")]
    h = Harness(ChatConfig(replay=5), history=history)
    legacy = h.connect(LEGACY)
    [array] = h.outbox.frames(legacy)
    assert isinstance(array, list) and all(isinstance(item, str) for item in array)
    assert [json.loads(item) for item in array] == [
        {"name": "&lt;b&gt;", "avatar": "", "message": "a &amp; b", "date": history[0].date},
        {"name": "bob", "avatar": "", "message": "hi", "date": history[1].date},
    ]
    alice, _ = h.join("alice")
    h.say(alice, "new")
    h.commit()
    assert h.outbox.last(legacy) == {
        "name": "alice",
        "avatar": "",
        "message": "new",
        "date": h.room.history[-1].date,
    }


def test_legacy_history_respects_replay_count_and_bytes() -> None:
    """The legacy history array is the same recent window a fresh join gets."""
    history = stored(10)
    h = Harness(ChatConfig(replay=3), history=history)
    [array] = h.outbox.frames(legacy := h.connect(LEGACY))
    assert [json.loads(item)["message"] for item in array] == ["m8", "m9", "m10"]
    assert legacy.name is None


def test_legacy_post_is_stored_with_its_fields_and_reaches_everyone() -> None:
    """A legacy post is stored as sent (not escaped) and broadcast after commit."""
    h = Harness()
    alice, _ = h.join("alice")
    legacy = h.connect(LEGACY)
    h.outbox.clear()
    h.send(legacy, name=" <i>old</i> ", avatar="https://example.org/o.png", message="x<y", date="x")
    [entry] = h.history.appended
    assert entry.sender is legacy
    assert (entry.message.name, entry.message.avatar, entry.message.text) == (
        "<i>old</i>",
        "https://example.org/o.png",
        "x<y",
    )
    assert entry.message.ms == NOW_MS  # the client's date is ignored
    assert h.outbox.log == []
    h.commit()
    assert messages(h.outbox.frames(alice))[0]["name"] == "<i>old</i>"
    assert h.outbox.last(legacy)["name"] == "&lt;i&gt;old&lt;/i&gt;"


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"name": "", "message": "hi"}, "bad_name"),
        ({"name": "a" * 33, "message": "hi"}, "name_too_long"),
        ({"name": "bob", "avatar": "javascript:alert(1)", "message": "hi"}, "bad_avatar"),
        ({"name": "bob", "message": "  "}, "empty_text"),
        ({"name": "bob", "message": "a\x00"}, "bad_text"),
        ({"name": "bob"}, "bad_frame"),
        ({"type": "join", "name": "bob"}, "bad_frame"),
    ],
)
def test_legacy_post_is_validated(fields: dict[str, Any], code: str) -> None:
    """A bad legacy post gets a v1 error frame and nothing is stored."""
    h = Harness()
    legacy = h.connect(LEGACY)
    h.send(legacy, **fields)
    assert h.outbox.last(legacy)["code"] == code
    assert h.history.appended == []


def test_legacy_listener_is_not_online() -> None:
    """Legacy listeners are neither in the online list nor counted in presence."""
    h = Harness()
    h.connect(LEGACY)
    bob, welcome = h.join("bob")
    assert welcome["online"] == [{"name": "bob", "avatar": ""}]
    _, welcome = h.join("carol")
    assert [m["name"] for m in welcome["online"]] == ["bob", "carol"]
    h.tick()
    assert h.outbox.last(bob)["count"] == 2


def test_legacy_post_is_rate_limited() -> None:
    """Legacy clients share the rate limit rules."""
    h = Harness(ChatConfig(limits=Limits(rate_messages=1, rate_window=10.0)))
    legacy = h.connect(LEGACY)
    h.send(legacy, name="old", message="one")
    h.send(legacy, name="old", message="two")
    error = h.outbox.last(legacy)
    assert (error["code"], error["retry_after"]) == ("rate_limited", 10.0)
    assert len(h.history.appended) == 1


def test_legacy_binary_frame_is_refused() -> None:
    """A binary frame from a legacy client is refused like any other."""
    h = Harness()
    legacy = h.connect(LEGACY)
    h.chat.received(legacy, b"{}")
    assert h.outbox.last(legacy)["code"] == "binary_frame"


def test_the_presence_tick_grows_with_the_room() -> None:
    """50 ms in a small room, longer in a big one (one write per member per tick), 1 s at most."""
    h = Harness()
    h.join("first")
    assert h.ticker.armed[0][0] == pytest.approx(0.05)
    h.tick()
    for number in range(1000):
        h.join(f"p{number}")
    h.tick()
    h.join("late")
    assert h.ticker.armed[0][0] == pytest.approx(1002 / PRESENCE_BUDGET)
    assert tick_for(10**6) == 1.0
