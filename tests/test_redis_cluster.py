"""Several daemons sharing their rooms through a real redis-server: delivery and resume."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.conftest import join, recv_type, say
from tests.redis_fixtures import cluster, messages, redis

__all__ = ["cluster", "redis"]  # fixtures


async def test_message_on_a_reaches_b_and_c_with_the_same_id(cluster: Any) -> None:
    """A message said on one daemon reaches the clients of the others, with one id."""
    a, b, c = await cluster(3)
    wa, _ = await join(a, "alice")
    wb, _ = await join(b, "bob")
    wc, _ = await join(c, "carol")
    await say(wa, "hello everyone")
    got = [await recv_type(ws, "message") for ws in (wa, wb, wc)]
    assert {frame["text"] for frame in got} == {"hello everyone"}
    assert len({frame["id"] for frame in got}) == 1
    for ws in (wa, wb, wc):
        await ws.close()


async def test_concurrent_senders_give_the_same_order_everywhere(cluster: Any) -> None:
    """Senders on every daemon at once: every client sees one order, each message once."""
    daemons = await cluster(3)
    clients = [(await join(d, f"user{i}"))[0] for i, d in enumerate(daemons)]
    per_sender = 20

    async def send(index: int, ws: Any) -> None:
        for n in range(per_sender):
            await say(ws, f"{index}-{n}")

    await asyncio.gather(*(send(i, ws) for i, ws in enumerate(clients)))
    total = per_sender * len(clients)
    seen = [await messages(ws, total) for ws in clients]
    orders = [[(f["id"], f["text"]) for f in frames] for frames in seen]
    assert orders[0] == orders[1] == orders[2]
    ids = [message_id for message_id, _ in orders[0]]
    assert ids == sorted(set(ids)) and len(ids) == total
    # Each sender's own messages keep the order it sent them in.
    for index in range(len(clients)):
        mine = [text for _, text in orders[0] if text.startswith(f"{index}-")]
        assert mine == [f"{index}-{n}" for n in range(per_sender)]
    for ws in clients:
        await ws.close()


async def test_resume_on_b_with_a_cursor_from_a(cluster: Any) -> None:
    """A page that reconnects to another daemon resumes after its cursor: no gap, no repeat."""
    a, b = await cluster(2)
    wa, welcome = await join(a, "alice")
    await say(wa, "one")
    first = await recv_type(wa, "message")
    await wa.close()
    wb, _ = await join(b, "bob")
    for text in ("two", "three"):
        await say(wb, text)
    await messages(wb, 2)
    again, resumed = await join(b, "alice", since=first["id"], epoch=welcome["epoch"])
    assert resumed["resumed"] is True and resumed["gap"] is False
    assert [m["text"] for m in resumed["history"]] == ["two", "three"]
    assert resumed["epoch"] == welcome["epoch"]
    await again.close()
    await wb.close()


async def test_newcomer_on_any_daemon_gets_the_same_replay(cluster: Any) -> None:
    """History lives in Redis: a join on another daemon replays what the first stored."""
    a, b = await cluster(2)
    wa, _ = await join(a, "alice")
    for n in range(5):
        await say(wa, f"m{n}")
    await messages(wa, 5)
    wb, welcome_b = await join(b, "bob")
    wa2, welcome_a = await join(a, "ann")
    assert [m["text"] for m in welcome_b["history"]] == [f"m{n}" for n in range(5)]
    assert welcome_a["history"] == welcome_b["history"]
    for ws in (wa, wb, wa2):
        await ws.close()


async def test_a_late_daemon_continues_the_ids(
    cluster: Any, daemon_factory: Any, redis: Any
) -> None:
    """Ids are Redis's: a daemon started later goes on from the shared counter."""
    (a,) = await cluster(1)
    wa, _ = await join(a, "alice")
    await say(wa, "first")
    first = await recv_type(wa, "message")
    (b,) = await cluster(1)
    wb, _ = await join(b, "bob")
    await say(wb, "second")
    second = await recv_type(wa, "message")
    assert second["id"] == first["id"] + 1
    for ws in (wa, wb):
        await ws.close()


async def test_retention_by_count_is_shared_and_survives_the_hourly_pass(cluster: Any) -> None:
    """The stream keeps the last history_max_messages; retention passes on any daemon agree."""
    a, b = await cluster(2, history_max_messages=5, history_replay=5)
    wa, _ = await join(a, "alice")
    for n in range(8):
        await say(wa, f"m{n}")
    await messages(wa, 8)
    await a.server.expire()
    await b.server.expire()
    wb, welcome = await join(b, "bob")
    assert [m["text"] for m in welcome["history"]] == [f"m{n}" for n in range(3, 8)]
    for ws in (wa, wb):
        await ws.close()


async def test_malformed_payloads_in_redis_are_ignored(cluster: Any, redis: Any) -> None:
    """Garbage on the room's channel or the control channel changes nothing; delivery goes on."""
    a, b = await cluster(2)
    wa, welcome = await join(a, "alice")
    wb, _ = await join(b, "bob")
    channel = "pichat:room:lobby:messages"
    epoch = welcome["epoch"]
    for data in (
        "not json",
        "[1]",
        f'{{"epoch": "{epoch}", "id": "x"}}',
        f'{{"epoch": "{epoch}"}}',
    ):
        assert redis.command("PUBLISH", channel, data).startswith(":")
    for data in (
        "{}",
        '{"t": "act", "room": "lobby", "kind": "clear", "done": {}, "through": "x"}',
    ):
        assert redis.command("PUBLISH", "pichat:control", data).startswith(":")
    redis.command("LPUSH", "pichat:log", '{"ms": 1, "bogus": true}')
    await say(wa, "still fine")
    for ws in (wa, wb):
        assert (await recv_type(ws, "message"))["text"] == "still fine"
    assert [e.ms for e in await b.server.chat.history.load_log(0, 10)] == []
    # Ignored, not a failed session: the subscription never dropped.
    assert "redis unavailable" not in a.log() + b.log()
    for ws in (wa, wb):
        await ws.close()


async def test_reload_with_another_redis_url_says_restart_without_the_password(
    daemon_factory: Any, tmp_path: Any
) -> None:
    """redis_url is bound at start: a reload logs that it needs a restart, not the URL."""
    from tests.harness import settings_for

    daemon = await daemon_factory()
    url = "redis://pichat:s3cret@127.0.0.1:1/0"
    await daemon.server.reload(settings_for(tmp_path / "s0", {"redis_url": url}))
    assert "redis_url changed: restart pichat to apply it" in daemon.log()
    assert "s3cret" not in daemon.log()
