"""The typing indicator with plain calls: throttled per member, relayed once, never stored."""

from __future__ import annotations

from pichat.chat import Member
from pichat.legacy import LEGACY
from pichat.typists import TYPING_INTERVAL
from tests.test_chat import Harness, errors
from tests.test_moderation import harness, moderator


def typing_frames(h: Harness, member: Member) -> list[str]:
    """The names in the typing frames queued for ``member``."""
    return [f["name"] for f in h.outbox.frames(member) if f.get("type") == "typing"]


def test_typing_is_relayed_to_the_others_not_to_the_typist() -> None:
    """One typing frame reaches every other v1 member, encoded once, and not the typist."""
    h = Harness()
    ada, _ = h.join("Ada")
    bob, _ = h.join("Bob")
    cy, _ = h.join("Cy")
    h.outbox.clear()
    h.outbox.broadcasts.clear()
    h.send(ada, type="typing")
    assert typing_frames(h, bob) == ["Ada"] and typing_frames(h, cy) == ["Ada"]
    assert h.outbox.frames(ada) == []
    assert len(h.outbox.broadcasts) == 1, "one frame for the whole room"


def test_typing_is_never_stored() -> None:
    """Nothing reaches the history and no message id is used."""
    h = Harness()
    ada, _ = h.join("Ada")
    h.send(ada, type="typing")
    assert h.history.appended == [] and h.room.last_id == 0


def test_extra_frames_within_the_interval_are_dropped_silently() -> None:
    """A second frame before the interval is over is dropped without an error; later it passes."""
    h = Harness()
    ada, _ = h.join("Ada")
    bob, _ = h.join("Bob")
    h.outbox.clear()
    h.send(ada, type="typing")
    h.clock.now += TYPING_INTERVAL - 0.1
    for _ in range(20):
        h.send(ada, type="typing")
    assert typing_frames(h, bob) == ["Ada"]
    assert h.outbox.frames(ada) == [], "no error for a page that types fast"
    h.clock.now += 0.1
    h.send(ada, type="typing")
    assert typing_frames(h, bob) == ["Ada", "Ada"]


def test_the_interval_is_per_member() -> None:
    """Two typists at the same instant are both relayed."""
    h = Harness()
    ada, _ = h.join("Ada")
    bob, _ = h.join("Bob")
    cy, _ = h.join("Cy")
    h.outbox.clear()
    h.send(ada, type="typing")
    h.send(bob, type="typing")
    assert typing_frames(h, cy) == ["Ada", "Bob"]


def test_legacy_listeners_never_get_typing() -> None:
    """echo-protocol clients in the room get nothing for a typing frame."""
    h = Harness()
    listener = h.connect(LEGACY)
    ada, _ = h.join("Ada")
    h.outbox.clear()
    h.send(ada, type="typing")
    assert h.outbox.frames(listener) == []


def test_typing_before_join_is_not_joined() -> None:
    """A typing frame before join is an error frame, and the connection can still join."""
    h = Harness()
    member = h.connect()
    h.send(member, type="typing")
    assert errors(h.outbox.frames(member)) == ["not_joined"]
    h.send(member, type="join", name="Ada")
    assert h.outbox.last(member)["type"] == "welcome"


def test_muted_and_locked_out_members_are_not_shown_typing() -> None:
    """Someone who may not post is not relayed as typing; a moderator in a locked room is."""
    h = harness()
    alice = moderator(h)
    bob, _ = h.join("bob", address="192.0.2.9")
    cy, _ = h.join("cy", address="192.0.2.10")
    h.send(alice, type="mute", name="bob", minutes=10)
    h.outbox.clear()
    h.send(bob, type="typing")
    assert typing_frames(h, cy) == []
    h.send(alice, type="lock", locked=True)
    h.send(cy, type="typing")
    h.send(alice, type="typing")
    assert typing_frames(h, cy) == ["Alice"]
    assert typing_frames(h, bob) == ["Alice"]


def test_a_dropped_frame_does_not_restart_the_interval() -> None:
    """Frames dropped as too early do not push the next relayed one further away."""
    h = Harness()
    ada, _ = h.join("Ada")
    bob, _ = h.join("Bob")
    h.outbox.clear()
    h.send(ada, type="typing")
    h.clock.now += 2.0
    h.send(ada, type="typing")
    h.clock.now += 1.0
    h.send(ada, type="typing")
    assert typing_frames(h, bob) == ["Ada", "Ada"]
