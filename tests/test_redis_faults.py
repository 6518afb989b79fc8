"""Faults with shared rooms: a daemon killed, Redis restarted, stopped, flushed, absent at start.

Every test checks what the issue promises: nothing is broadcast that was not
stored, every client sees one gap-free order with no repeat, and pages that
must start over are told so (close 1012, then a welcome with a new epoch).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from tests.conftest import join, recv, recv_presence, recv_type, say
from tests.daemon import TIMEOUT
from tests.http import raw_get
from tests.redis_fixtures import cluster, cluster_config, redis
from tests.redis_server import RedisServer

__all__ = ["cluster", "redis"]  # fixtures


class Listener:
    """A joined client that records every message frame and error code it gets."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.messages: list[tuple[int, str]] = []
        self.errors: list[str] = []
        self.closed: int | None = None
        self.task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        try:
            async for data in self.ws:
                frame = json.loads(data)
                if frame["type"] == "message":
                    self.messages.append((frame["id"], frame["text"]))
                elif frame["type"] == "error":
                    self.errors.append(frame["code"])
        except ConnectionClosed:
            pass
        self.closed = self.ws.close_code

    async def until(self, text: str) -> None:
        """Wait until a message with this text arrived."""
        deadline = time.monotonic() + TIMEOUT
        while not any(t == text for _, t in self.messages):
            assert time.monotonic() < deadline, f"{text!r} never arrived: {self.messages[-3:]}"
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        await self.ws.close()
        await self.task


async def say_until_stored(ws: Listener, text: str) -> None:
    """Say ``text``, again after each ``unavailable``, until it is delivered back."""
    deadline = time.monotonic() + 3 * TIMEOUT
    while True:
        errors = len(ws.errors)
        await say(ws.ws, text)
        while len(ws.errors) == errors and not any(t == text for _, t in ws.messages):
            assert time.monotonic() < deadline, "never stored"
            await asyncio.sleep(0.02)
        if any(t == text for _, t in ws.messages):
            return
        await asyncio.sleep(0.1)


def assert_one_order(listeners: list[Listener]) -> list[tuple[int, str]]:
    """Every listener saw the same messages in the same order, each once."""
    first = listeners[0].messages
    ids = [message_id for message_id, _ in first]
    assert ids == sorted(set(ids)), "a repeat or an id out of order"
    for other in listeners[1:]:
        assert other.messages == first
    return first


async def load(listener: Listener, prefix: str, count: int) -> list[str]:
    """Say ``count`` messages, one every 20 ms, whatever Redis does; the texts sent."""
    texts = [f"{prefix}{n}" for n in range(count)]
    for text in texts:
        await say(listener.ws, text)
        await asyncio.sleep(0.02)
    return texts


def stored_texts(listener: Listener) -> set[str]:
    return {text for _, text in listener.messages}


@pytest.mark.parametrize("fault", ["restart", "crash", "pause"])
async def test_redis_restart_or_pause_under_load_loses_and_repeats_nothing(
    cluster: Any, redis: RedisServer, fault: str
) -> None:
    """Redis restarted or SIGSTOPped mid-load: ``unavailable`` meanwhile, then one order."""
    a, b = await cluster(2)
    la = Listener((await join(a, "alice"))[0])
    lb = Listener((await join(b, "bob"))[0])
    sending = asyncio.get_running_loop().create_task(load(la, "a", 150))
    await la.until("a20")
    if fault in ("restart", "crash"):
        # SHUTDOWN, or kill -9: with AOF a process crash loses nothing written.
        redis.stop() if fault == "restart" else redis.kill()
        await asyncio.sleep(1.0)
        redis.start()
    else:
        redis.pause()
        await asyncio.sleep(3.0)
        redis.resume()
    sent = await sending
    await say_until_stored(lb, "after")
    await la.until("after")
    order = assert_one_order([la, lb])
    assert "unavailable" in la.errors
    # What was not refused was stored; a refused one may be stored too (a
    # stopped Redis runs a write it had read when it resumes): never twice.
    refused = la.errors.count("unavailable")
    assert len([t for _, t in order if t.startswith("a")]) >= len(sent) - refused
    assert await healthy(a)
    assert la.closed is None and lb.closed is None  # connections stayed open
    await la.close()
    await lb.close()


async def healthy(daemon: Any) -> bool:
    """Whether /healthz says ok (200) rather than degraded (503)."""
    status, _, body = await raw_get(daemon, "/healthz")
    return status == 200 and bool(json.loads(body)["status"] == "ok")


async def test_flushed_redis_gives_a_new_epoch_and_pages_start_over(
    cluster: Any, redis: RedisServer
) -> None:
    """FLUSHALL: connections close with 1012, and the resume gets a fresh welcome."""
    a, b = await cluster(2)
    wa, welcome = await join(a, "alice")
    await say(wa, "before the flush")
    last = await recv_type(wa, "message")
    wb, _ = await join(b, "bob")
    assert redis.command("FLUSHALL") == "+OK"
    for ws in (wa, wb):
        with pytest.raises(ConnectionClosed):
            while True:
                await recv(ws)
        assert ws.close_code == 1012
    again, fresh = await join(b, "alice", since=last["id"], epoch=welcome["epoch"])
    assert fresh["epoch"] != welcome["epoch"]
    assert fresh["resumed"] is False and fresh["gap"] is True
    assert fresh["history"] == []
    await say(again, "after the flush")
    assert (await recv_type(again, "message"))["id"] == 1
    await again.close()


async def test_start_without_redis_is_degraded_then_recovers(
    daemon_factory: Any, tmp_path: Path
) -> None:
    """READY=1 waits redis_start_timeout, then serves degraded; when Redis comes, it works."""
    server = RedisServer(tmp_path / "late-redis")
    try:
        daemon = await daemon_factory(cluster_config(server, redis_start_timeout=0.3))
        assert not await healthy(daemon)
        assert b"pichat_history_up 0.0" in (await raw_get(daemon, "/metrics"))[2]
        ws = Listener(await _open(daemon))
        await ws.ws.send(json.dumps({"type": "join", "name": "early"}))
        await asyncio.sleep(0.5)
        assert "unavailable" in ws.errors
        server.start()
        deadline = time.monotonic() + TIMEOUT
        while not await healthy(daemon):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        joined, _ = await join(daemon, "late")
        await say(joined, "hello")
        assert (await recv_type(joined, "message"))["text"] == "hello"
        await joined.close()
        await ws.close()
    finally:
        server.close()


async def _open(daemon: Any) -> Any:
    from tests.conftest import open_client

    return await open_client(daemon)


async def test_kill_9_of_a_daemon_under_load(
    redis: RedisServer, daemon_factory: Any, process_factory: Any
) -> None:
    """kill -9 of A: its members leave in time, B loses nothing, A's pages resume on B."""
    config = cluster_config(redis)
    a = process_factory(config)
    b = await daemon_factory(config)
    wa, welcome = await join(a, "amy")
    lb = Listener((await join(b, "bob"))[0])
    watcher, seen_online = await join(b, "watch")
    assert "amy" in {p["name"] for p in seen_online["online"]}
    sending = asyncio.get_running_loop().create_task(load(lb, "b", 100))
    await lb.until("b10")
    seen = await recv_type(wa, "message")
    a.kill()
    # The TTL (3 s here) plus one beat is well inside the wait's bound (TIMEOUT).
    left = await recv_presence(watcher, left="amy")
    assert "amy" in left["left"]
    await sending
    await lb.until("b99")
    assert [t for _, t in lb.messages] == [f"b{n}" for n in range(100)]
    again, resumed = await join(b, "amy", since=seen["id"], epoch=welcome["epoch"])
    assert resumed["resumed"] is True and resumed["gap"] is False
    replayed = [m["id"] for m in resumed["history"]]
    assert replayed == [i for i, _ in lb.messages if i > seen["id"]][: len(replayed)]
    assert resumed["you"]["name"] == "amy"  # the dead daemon's claim is gone
    for ws in (again, watcher):
        await ws.close()
    await lb.close()


async def test_a_redis_that_lost_writes_starts_the_room_over(
    cluster: Any, redis: RedisServer
) -> None:
    """A counter behind what was delivered (lost writes): a new epoch, never an id twice."""
    (a,) = await cluster(1)
    wa, welcome = await join(a, "alice")
    for text in ("one", "two", "three"):
        await say(wa, text)
    last = [await recv_type(wa, "message") for _ in range(3)][-1]
    # What a power cut within the last fsync looks like: the last writes gone.
    assert redis.command("SET", "pichat:room:lobby:id", "1") == "+OK"
    assert redis.command("XTRIM", "pichat:room:lobby:stream", "MAXLEN", "1").startswith(":")
    with pytest.raises(ConnectionClosed):
        while True:
            await recv(wa)
    assert wa.close_code == 1012
    again, fresh = await join(a, "alice", since=last["id"], epoch=welcome["epoch"])
    assert fresh["epoch"] != welcome["epoch"] and fresh["gap"] is True
    await again.close()


def test_ready_without_redis_says_degraded(tmp_path: Path) -> None:
    """Past redis_start_timeout, READY=1 comes with a STATUS that says degraded, and a log line."""
    from tests.daemon import Daemon

    server = RedisServer(tmp_path / "absent")  # never started
    (tmp_path / "d").mkdir()
    daemon = Daemon(tmp_path / "d", cluster_config(server, redis_start_timeout=0.2))
    try:
        daemon.start()
        assert daemon.notify is not None
        ready = next(m for m in daemon.notify.messages if m.get("READY") == "1")
        assert "degraded" in ready["STATUS"]
        assert "starting degraded" in daemon.log()
    finally:
        daemon.stop()
        server.close()


async def test_an_outage_longer_than_the_ttl_makes_nobody_leave(
    cluster: Any, redis: RedisServer
) -> None:
    """Redis stopped past the presence TTL: when it returns, live daemons' members stay."""
    a, b = await cluster(2)
    wa = Listener((await join(a, "alice"))[0])
    frames: list[Any] = []
    wb, _ = await join(b, "bob")
    redis.pause()
    await asyncio.sleep(4.5)  # past redis_presence_ttl (3 s): every heartbeat lapsed
    redis.resume()
    await say_until_stored(wa, "back")
    await asyncio.sleep(4.0)  # more than a TTL: any expiry would have happened
    await say_until_stored(wa, "later")
    while True:
        frame = json.loads(await asyncio.wait_for(wb.recv(), TIMEOUT))
        frames.append(frame)
        if frame.get("text") == "later":
            break
    presence = [f for f in frames if f.get("type") == "presence"]
    # The first frame is bob's own join tick (it may name alice as the room B learned);
    # after it, alice must neither leave nor join again.
    assert not [f for f in presence if "alice" in f["left"]]
    assert not [f for f in presence[1:] if "alice" in [p["name"] for p in f["joined"]]]
    await wb.close()
    await wa.close()
