"""Moderation against a real in-process daemon, with real WebSocket clients.

Close codes, the 403 at the handshake, bans that survive a restart, deletions
that survive a restart, and the legacy dialect's reserved names.
"""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus

from pichat.passwords import hash_password
from tests.conftest import open_client, recv, recv_presence, recv_type, say
from tests.daemon import TIMEOUT
from tests.harness import running
from tests.http import raw_get

PASSWORD = "correct horse"
HASH = hash_password(PASSWORD, n=16)
CONFIG: dict[str, Any] = {"moderators": [{"name": "alice", "password_hash": HASH}]}
#: Another loopback address for "bob", so that banning his address spares alice's.
BOB = {"local_addr": ("127.0.0.2", 0)}


async def send(ws: ClientConnection, **frame: Any) -> None:
    """Send one JSON frame."""
    await ws.send(json.dumps(frame))


async def closed(ws: ClientConnection) -> tuple[int | None, str | None]:
    """Read until the server closes; its close code and reason."""
    with pytest.raises(ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
    return ws.close_code, ws.close_reason


async def moderator(daemon: Any) -> ClientConnection:
    """alice, joined with her password."""
    ws, welcome = await join(daemon, "Alice", password=PASSWORD)
    assert welcome["you"]["moderator"] is True
    return ws


async def join_with(
    daemon: Any, name: str, connect: dict[str, Any] | None = None, **fields: Any
) -> tuple[ClientConnection, Any]:
    """Connect (with ``connect`` options) and send a join with extra fields; the answer."""
    ws = await open_client(daemon, **(connect or {}))
    await send(ws, type="join", name=name, **fields)
    return ws, await recv(ws)


async def join(
    daemon: Any, name: str, connect: dict[str, Any] | None = None, **fields: Any
) -> tuple[ClientConnection, Any]:
    """Connect and join with extra join fields (a password); returns it and its welcome."""
    ws, frame = await join_with(daemon, name, connect, **fields)
    assert frame["type"] == "welcome", frame
    return ws, frame


async def test_reserved_name_and_wrong_password_over_the_wire(daemon_factory: Any) -> None:
    """name_reserved and bad_password are error frames; the connection stays open."""
    daemon = await daemon_factory(CONFIG)
    ws, frame = await join_with(daemon, "ALICE")
    assert frame["code"] == "name_reserved"
    await send(ws, type="join", name="alice", password="nope")
    assert (await recv(ws))["code"] == "bad_password"
    await send(ws, type="join", name="alice", password=PASSWORD)
    assert (await recv(ws))["you"] == {"name": "alice", "avatar": "", "moderator": True}
    await ws.close()


async def test_delete_reaches_every_page_and_survives_a_restart(tmp_path: Path) -> None:
    """A deleted message vanishes from other pages and from the history after a restart."""
    async with running(tmp_path, CONFIG) as daemon:
        bob, _ = await join(daemon, "bob")
        await say(bob, "keep")
        await say(bob, "delete me")
        first = await recv_type(bob, "message")
        doomed = await recv_type(bob, "message")
        alice = await moderator(daemon)
        await send(alice, type="delete", id=doomed["id"])
        assert await recv_type(bob, "deleted") == {"type": "deleted", "id": doomed["id"]}
        assert (await recv_type(alice, "done"))["action"] == "delete"
        await send(alice, type="delete", id=999)
        assert (await recv_type(alice, "error"))["code"] == "no_message"
        _, welcome = await join(daemon, "carol", since=0, epoch=None)
        assert [m["id"] for m in welcome["history"]] == [first["id"]]
    async with running(tmp_path, CONFIG) as daemon:
        _, welcome = await join(daemon, "dave")
        assert [m["text"] for m in welcome["history"]] == ["keep"]


async def test_kick_from_an_ordinary_member_is_forbidden(daemon: Any) -> None:
    """Anyone but a moderator gets forbidden, and nobody is closed."""
    bob, _ = await join(daemon, "bob")
    carol, _ = await join(daemon, "carol")
    await send(carol, type="kick", name="bob")
    assert (await recv_type(carol, "error"))["code"] == "forbidden"
    await say(bob, "fine")
    assert (await recv_type(bob, "message"))["text"] == "fine"


async def test_kick_by_moderator(daemon_factory: Any) -> None:
    """A moderator's kick: 4001 with the reason; the others see bob leave."""
    daemon = await daemon_factory(CONFIG)
    bob, _ = await join(daemon, "bob")
    carol, _ = await join(daemon, "carol")
    alice = await moderator(daemon)
    await send(alice, type="kick", name="bob", reason="calm down")
    assert await closed(bob) == (4001, "calm down")
    leave = await recv_presence(carol, left="bob")
    assert "bob" not in [p["name"] for p in leave["joined"]]
    # Nothing else changed: carol still chats.
    await say(carol, "still here")
    assert (await recv_type(carol, "message"))["text"] == "still here"


async def test_ban_closes_with_4003_refuses_the_handshake_and_survives_restart(
    tmp_path: Path,
) -> None:
    """A ban: 4003, then HTTP 403 for the address, also after a restart, until unban."""
    async with running(tmp_path, CONFIG) as daemon:
        bob, _ = await join(daemon, "bob", BOB)
        alice = await moderator(daemon)
        await send(alice, type="ban", name="bob", minutes=-5)
        assert (await recv_type(alice, "error"))["code"] == "bad_minutes"
        await send(alice, type="ban", name="bob", minutes=0, reason="spam")
        assert await closed(bob) == (4003, "spam")
        with pytest.raises(InvalidStatus) as refused:
            await open_client(daemon, **BOB)
        assert refused.value.response.status_code == 403
        assert b"banned" in refused.value.response.body
        # Another address may not take the banned name either.
        _, frame = await join_with(daemon, "Bob")
        assert frame["code"] == "name_banned"
        await say(alice, "alice is not banned")
        assert (await recv_type(alice, "message"))["text"] == "alice is not banned"
    async with running(tmp_path, CONFIG) as daemon:
        with pytest.raises(InvalidStatus) as refused:
            await open_client(daemon, **BOB)
        assert refused.value.response.status_code == 403
        alice = await moderator(daemon)
        await send(alice, type="unban", address="127.0.0.2")
        assert (await recv_type(alice, "done"))["action"] == "unban"
        ws, _ = await join(daemon, "bob", BOB)
        await ws.close()


async def test_lock_slow_and_mute_survive_a_restart(tmp_path: Path) -> None:
    """A room locked against a raid stays locked when the daemon restarts (SQLite)."""
    async with running(tmp_path, CONFIG) as daemon:
        bob, _ = await join(daemon, "bob", BOB)
        alice = await moderator(daemon)
        await send(alice, type="mute", name="bob", minutes=10)
        await recv_type(alice, "done")
        await send(alice, type="slow", seconds=30)
        await recv_type(alice, "done")
        await send(alice, type="lock", locked=True)
        await recv_type(alice, "done")
        await bob.close()
    async with running(tmp_path, CONFIG) as daemon:
        carol, welcome = await join(daemon, "carol")
        assert (welcome["locked"], welcome["slow"]) == (True, 30)
        await say(carol, "is it still locked?")
        assert (await recv_type(carol, "error"))["code"] == "room_locked"
        alice = await moderator(daemon)
        await send(alice, type="lock", locked=False)
        await recv_type(alice, "done")
        bob, _ = await join(daemon, "bob", BOB)
        await say(bob, "free again?")
        assert (await recv_type(bob, "error"))["code"] == "muted"


async def test_password_check_does_not_stall_the_chat(daemon_factory: Any) -> None:
    """scrypt runs on its own thread: while a check waits, the room goes on.

    The check is held deterministically by occupying the daemon's one scrypt
    thread until the test lets it go.
    """
    daemon = await daemon_factory(CONFIG)
    gate = threading.Event()
    daemon.server.scrypt.submit(gate.wait, TIMEOUT)
    bob, _ = await join(daemon, "bob")
    alice = await open_client(daemon)
    await send(alice, type="join", name="alice", password=PASSWORD)
    await say(bob, "the room goes on")
    assert (await recv_type(bob, "message"))["text"] == "the room goes on"
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(alice.recv(), 0.2)  # alice is still being checked
    gate.set()
    welcome = await recv(alice)
    assert welcome["type"] == "welcome" and welcome["you"]["moderator"] is True
    await recv_presence(bob, joined="alice")


async def test_stopping_the_daemon_drops_queued_password_checks(daemon_factory: Any) -> None:
    """At shutdown the scrypt thread takes no more work and what waits for it is cancelled.

    Lost once when the periodic task moved to its own module: queued checks
    (16 MiB and tens of milliseconds each on a Pi) then ran on after the stop.
    """
    daemon = await daemon_factory(CONFIG)
    scrypt = daemon.server.scrypt
    gate = threading.Event()
    busy = scrypt.submit(gate.wait, TIMEOUT)
    queued = scrypt.submit(lambda: None)
    try:
        assert await daemon.stop() == 0
        assert queued.cancelled()
        with pytest.raises(RuntimeError):
            scrypt.submit(lambda: None)
    finally:
        gate.set()
    assert busy.result(TIMEOUT) is True


async def test_site_json_tells_a_banned_address_why(daemon_factory: Any) -> None:
    """A page cannot read the 403 of a refused handshake: /site.json says it is banned."""
    daemon = await daemon_factory(CONFIG)
    bob, _ = await join(daemon, "bob", BOB)
    alice = await moderator(daemon)
    await send(alice, type="ban", name="bob", minutes=30, reason="spam")
    await closed(bob)
    status, _, body = await raw_get(daemon, "/site.json", source="127.0.0.2")
    assert status == 200
    ban = json.loads(body)["banned"]
    assert ban["reason"] == "spam" and ban["until"] > 0
    status, _, body = await raw_get(daemon, "/site.json")
    assert status == 200 and "banned" not in json.loads(body)
    await send(alice, type="unban", address="127.0.0.2")
    await recv_type(alice, "done")
    status, _, body = await raw_get(daemon, "/site.json", source="127.0.0.2")
    assert "banned" not in json.loads(body)


async def test_mute_lock_and_slow_over_the_wire(daemon_factory: Any) -> None:
    """lock sends the room frame and stops others posting; unlock and mute behave."""
    daemon = await daemon_factory(CONFIG)
    bob, _ = await join(daemon, "bob")
    alice = await moderator(daemon)
    await send(alice, type="lock", locked=True)
    assert await recv_type(bob, "room") == {"type": "room", "locked": True, "slow": 0}
    await say(bob, "hello")
    assert (await recv_type(bob, "error"))["code"] == "room_locked"
    await send(alice, type="lock", locked=False)
    await recv_type(bob, "room")
    await send(alice, type="mute", name="bob", minutes=1)
    await recv_type(alice, "done")
    await say(bob, "hello")
    error = await recv_type(bob, "error")
    assert error["code"] == "muted" and 0 < error["retry_after"] <= 60
    await send(alice, type="slow", seconds=3601)
    assert (await recv_type(alice, "error"))["code"] == "bad_seconds"


async def test_legacy_client_cannot_use_a_moderator_name(daemon_factory: Any) -> None:
    """An echo-protocol frame under the moderator's name is refused with name_reserved."""
    daemon = await daemon_factory(CONFIG)
    legacy = await open_client(daemon, "echo-protocol")
    await recv(legacy)  # the history
    await legacy.send(json.dumps({"name": "Alice", "avatar": "", "message": "I am the owner"}))
    assert (await recv(legacy))["code"] == "name_reserved"
    await legacy.close()


# Client addresses behind a proxy.


async def test_forged_forwarded_header_from_an_untrusted_peer_changes_nothing(
    daemon_factory: Any,
) -> None:
    """Without trusted_proxies a made-up X-Forwarded-For does not escape a ban."""
    daemon = await daemon_factory(CONFIG)
    bob, _ = await join(daemon, "bob", BOB)
    alice = await moderator(daemon)
    await send(alice, type="ban", name="bob")
    await closed(bob)
    forged = {**BOB, "additional_headers": {"X-Forwarded-For": "203.0.113.50"}}
    with pytest.raises(InvalidStatus) as refused:
        await open_client(daemon, **forged)
    assert refused.value.response.status_code == 403


async def test_trusted_proxy_gives_the_forwarded_address(daemon_factory: Any) -> None:
    """From a trusted proxy, the rightmost untrusted X-Forwarded-For hop is the client."""
    daemon = await daemon_factory({**CONFIG, "trusted_proxies": ["127.0.0.2"]})

    def via(address: str) -> dict[str, Any]:
        forwarded = f"6.6.6.6, {address}"  # the left entry is the client's own forgery
        return {**BOB, "additional_headers": {"X-Forwarded-For": forwarded}}

    bob, _ = await join(daemon, "bob", via("203.0.113.7"))
    clients = {client.name: client for client in daemon.server.outbox.clients}
    assert clients["bob"].address == "203.0.113.7"
    alice = await moderator(daemon)
    await send(alice, type="ban", name="bob")
    await closed(bob)
    with pytest.raises(InvalidStatus):
        await open_client(daemon, **via("203.0.113.7"))
    carol, _ = await join(daemon, "carol", via("203.0.113.8"))  # another client, same proxy
    await carol.close()


async def test_rate_limit_is_shared_by_one_address(daemon_factory: Any) -> None:
    """Connections from one address share rate_messages_per_ip."""
    daemon = await daemon_factory({"rate_messages": 5, "rate_messages_per_ip": 6})
    first, _ = await join(daemon, "one")
    second, _ = await join(daemon, "two")
    for index in range(5):
        await say(first, f"a{index}")
        await recv_type(first, "message")
    await say(second, "b0")
    await say(second, "b1")
    # b1's error comes at once, b0 once stored: read until both arrived.
    seen, codes = [], []
    while "b0" not in seen or not codes:
        frame = await recv(second)
        if frame["type"] == "message":
            seen.append(frame["text"])
        elif frame["type"] == "error":
            codes.append(frame["code"])
    assert codes == ["rate_limited"] and seen == ["a0", "a1", "a2", "a3", "a4", "b0"]
