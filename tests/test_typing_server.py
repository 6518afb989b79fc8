"""The typing indicator over real sockets: relayed once, not stored, not to legacy clients."""

from __future__ import annotations

import asyncio
import json

from tests.conftest import join, open_client, recv, recv_presence, recv_type, say
from tests.daemon import TIMEOUT
from tests.harness import Running as Daemon


async def test_typing_is_relayed_once_and_never_stored(daemon: Daemon) -> None:
    """A burst of typing frames reaches the others as one frame, then the message; no history."""
    alice, _ = await join(daemon, "alice")
    bob, _ = await join(daemon, "bob")
    await recv_presence(alice, joined="bob")
    await recv_presence(bob, joined="bob")  # nothing but typing from now on
    legacy = await open_client(daemon, "echo-protocol")
    json.loads(await asyncio.wait_for(legacy.recv(), TIMEOUT))  # the (empty) history
    for _ in range(10):
        await alice.send(json.dumps({"type": "typing"}))
    await say(alice, "done typing")
    assert await recv(bob) == {"type": "typing", "name": "alice"}
    # Frames arrive in order: the next one after the single typing is the message.
    assert (await recv(bob))["text"] == "done typing"
    got = await recv_type(alice, "message")
    assert got["text"] == "done typing", "no typing frame, no error to the typist"
    assert json.loads(await asyncio.wait_for(legacy.recv(), TIMEOUT))["message"] == "done typing"
    late, welcome = await join(daemon, "carol")
    assert [m["text"] for m in welcome["history"]] == ["done typing"]
    for ws in (alice, bob, legacy, late):
        await ws.close()


async def test_typing_before_join_is_an_error_and_the_connection_lives(daemon: Daemon) -> None:
    """typing before join answers not_joined; the same connection then joins."""
    ws = await open_client(daemon)
    await ws.send(json.dumps({"type": "typing"}))
    frame = await recv(ws)
    assert frame["type"] == "error" and frame["code"] == "not_joined"
    await ws.send(json.dumps({"type": "join", "name": "dave"}))
    assert (await recv_type(ws, "welcome"))["you"]["name"] == "dave"
    await ws.close()
