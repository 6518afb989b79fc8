"""The Lua scripts and key layout, run against a real redis-server (no daemon)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pichat.protocol import Message
from pichat.redis_link import RedisLink
from pichat.redis_scripts import (
    CLAIM,
    DAEMONS,
    PUBLISH,
    REAP,
    RoomKeys,
    message_fields,
    message_from_fields,
    stream_id,
)
from tests.conftest import join, recv_type, say
from tests.redis_fixtures import cluster, redis
from tests.redis_server import RedisServer

__all__ = ["cluster", "redis"]  # fixtures


@pytest.fixture
async def client(redis: RedisServer) -> AsyncIterator[Any]:
    """A redis-py client as pichat makes it."""
    link = RedisLink(redis.url)
    yield link.client
    await link.close()


async def publish(
    client: Any, room: str, text: str, *, keep: int = 1000, oldest: int = 0, ms: int = 1000,
    channel: str | None = None,
) -> list[Any]:  # fmt: skip
    """Run the publish script as the history does; returns [id, epoch]."""
    keys = RoomKeys(room)
    fields = message_fields(Message(0, ms, "n", "", text))
    args = ["fresh-epoch", keep, oldest, *fields, channel or keys.channel]
    result: list[Any] = await client.eval(PUBLISH, 3, keys.counter, keys.stream, keys.epoch, *args)
    return result


async def test_publish_gives_increasing_ids_and_keeps_the_first_epoch(client: Any) -> None:
    """INCR per room; the epoch is created once and then kept."""
    assert await publish(client, "r", "a") == [1, "fresh-epoch"]
    await client.set(RoomKeys("r").epoch, "kept")
    assert await publish(client, "r", "b") == [2, "kept"]
    assert (await publish(client, "other", "c"))[0] == 1
    entries = await client.xrange(RoomKeys("r").stream)
    assert [stream_id(i) for i, _ in entries] == [1, 2]
    assert message_from_fields(1, entries[0][1]).text == "a"


async def test_publish_trims_by_count_and_by_age(client: Any) -> None:
    """MINID keeps the last ``keep`` ids; messages older than ``oldest`` go from the front."""
    for n in range(5):
        await publish(client, "r", f"m{n}", keep=3, ms=1000 + n)
    assert [stream_id(i) for i, _ in await client.xrange(RoomKeys("r").stream)] == [3, 4, 5]
    await publish(client, "r", "new", keep=100, oldest=1004, ms=2000)
    assert [stream_id(i) for i, _ in await client.xrange(RoomKeys("r").stream)] == [5, 6]


async def test_publish_sends_id_epoch_and_fields(client: Any, redis: RedisServer) -> None:
    """The published payload carries what a subscriber needs to deliver without a read."""
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(RoomKeys("r").channel)
    await publish(client, "r", "hello")
    message = None
    while message is None:
        message = await pubsub.get_message(timeout=1.0)
    payload = json.loads(message["data"])
    assert payload["id"] == 1 and payload["epoch"] == "fresh-epoch" and payload["text"] == "hello"
    await pubsub.aclose()


async def test_claim_takes_the_first_free_name_and_reap_removes_a_dead_daemon(
    client: Any,
) -> None:
    """HSETNX over the candidates; REAP removes only the dead daemon's entries."""
    online = RoomKeys("r").online
    first = json.dumps({"d": "A", "n": "sam"})
    assert await client.eval(CLAIM, 1, online, "sam", first, "sam (2)", "x") == 1
    second = json.dumps({"d": "B", "n": "sam (2)"})
    assert await client.eval(CLAIM, 1, online, "sam", "y", "sam (2)", second) == 2
    assert await client.eval(CLAIM, 1, online, "sam", "z") == 0
    await client.sadd(DAEMONS, "A", "B")
    removed = await client.eval(REAP, 2, DAEMONS, online, "A")
    assert removed == [1, first]
    assert await client.hgetall(online) == {"sam (2)": second}
    assert await client.smembers(DAEMONS) == {"B"}


async def test_a_lost_publish_is_filled_from_the_stream(cluster: Any, client: Any) -> None:
    """A message stored but never published on the room's channel is still delivered, in order."""
    a, b = await cluster(2)
    wa, _ = await join(a, "alice")
    wb, _ = await join(b, "bob")
    await publish(client, "lobby", "stored, publish lost", channel="nowhere", ms=1)
    await say(wa, "next")
    for ws in (wa, wb):
        first, second = await recv_type(ws, "message"), await recv_type(ws, "message")
        assert (first["text"], second["text"]) == ("stored, publish lost", "next")
        assert second["id"] == first["id"] + 1
    await wa.close()
    await wb.close()


async def test_history_keeps_bans_rules_and_the_log_in_redis(redis: RedisServer) -> None:
    """Bans, rules and the moderation log written by one daemon are read back by another."""
    from pichat.bans import Ban
    from pichat.history import Deletion, LogEntry
    from pichat.redis_history import RedisHistory
    from pichat.retention import Retention

    class Listener:
        def committed(self, batch: list[Any]) -> None:
            raise AssertionError("the Redis history delivers through the bus")

        def failed(self, batch: list[Any]) -> None:
            raise AssertionError(batch)

    writer, reader = RedisLink(redis.url), RedisLink(redis.url)
    history = RedisHistory(writer, Retention)
    history.start(Listener())
    ban = Ban("10.0.0.1", "bob", 0, "spam", "lobby", "alice", 5, "Bob")
    history.save_bans([ban])
    history.save_rules({"lobby": {"locked": True}})
    for ms in (10, 20, 30):
        history.record(LogEntry(ms, "lobby", "alice", "lock", "{}"))
    for n in range(3):
        await publish(writer.client, "lobby", f"m{n}")
    history.delete(Deletion("lobby", (2,)))
    await history.close()
    other = RedisHistory(reader, Retention)
    assert await other.load_bans() == [ban]
    assert await other.load_rules() == {"lobby": {"locked": True}}
    assert [e.ms for e in await other.load_log(15, 10)] == [20, 30]
    assert [m.id for m in (await other.load("lobby", 10)).messages] == [1, 3]
    assert [m.id for m in await other.messages_after("lobby", 1, 10)] == [3]
    await writer.close()
    await reader.close()
