"""What the outside review found, each reproduced against an in-process daemon.

Every test here failed before its fix: abandoned handshakes leaking slots, no
join timeout, unbounded welcomes, keepalive stalled by one slow reader, HTTP
methods and forms, log floods, DNS rebinding, huge ``since``, /healthz saying
too much, and the missing epoch.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import socket
import struct
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Opcode

from pichat.outbox import Client
from pichat.server import address_key
from tests.conftest import join, open_client, recv, recv_type, say
from tests.daemon import TIMEOUT
from tests.harness import Running, running
from tests.http import raw_get, raw_request


def upgrade_request(port: int, host: str | None = None, origin: str | None = None) -> bytes:
    """A complete WebSocket upgrade request, as a browser sends it."""
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        "GET / HTTP/1.1",
        f"Host: {host or f'127.0.0.1:{port}'}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        "Sec-WebSocket-Protocol: pichat.v1",
    ]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def eventually(predicate: Any, what: str) -> None:
    """Wait (bounded) until ``predicate()`` is true."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while not predicate():
        if loop.time() > deadline:
            pytest.fail(f"never happened: {what}")
        await asyncio.sleep(0.02)


def server_client(daemon: Running, name: str) -> Client:
    """The server's record of the joined client called ``name``."""
    for client in daemon.server.outbox.clients:
        if client.name == name:
            return client
    raise LookupError(name)


# Abandoned handshakes and join timeout.


@pytest.mark.parametrize("how", ["fin", "rst"])
async def test_abandoned_handshakes_release_their_slots(daemon_factory: Any, how: str) -> None:
    """Upgrade requests whose client leaves before reading the 101 free their slot."""
    daemon = await daemon_factory({"max_connections_per_ip": 3, "max_connections": 5})
    for _ in range(20):
        sock = socket.create_connection(("127.0.0.1", daemon.port))
        sock.sendall(upgrade_request(daemon.port))
        if how == "rst":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    # The server meets those connections over the next loop turns: retry until
    # all three slots of this address are free (forever, before the fix).
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while True:
        clients: list[ClientConnection] = []
        try:
            for _ in range(3):
                clients.append(await open_client(daemon))
            break
        except InvalidStatus:
            if loop.time() > deadline:
                pytest.fail(f"slots never released: {daemon.server.reserved} reserved")
            await asyncio.sleep(0.05)
        finally:
            for ws in clients:
                await ws.close()
    await eventually(lambda: daemon.server.reserved == 0, "every slot released")


async def test_connection_that_never_joins_is_closed(daemon_factory: Any) -> None:
    """A pichat.v1 connection without join is closed with 4008 after join_timeout."""
    daemon = await daemon_factory({"join_timeout": 0.3})
    idle = await open_client(daemon)
    joined, _ = await join(daemon, "alice")
    legacy = await open_client(daemon, "echo-protocol")
    await recv(legacy)  # its history
    with pytest.raises(ConnectionClosed):
        while True:
            await asyncio.wait_for(idle.recv(), TIMEOUT)
    assert idle.close_code == 4008 and idle.close_reason == "join timeout"
    await asyncio.sleep(0.5)
    await say(joined, "still here")  # neither the joined nor the legacy client was closed
    assert (await recv_type(joined, "message"))["text"] == "still here"
    assert json.loads(await asyncio.wait_for(legacy.recv(), TIMEOUT))["message"] == "still here"
    await joined.close()
    await legacy.close()
    await eventually(lambda: daemon.server.reserved == 0, "slots released")


def test_ipv6_clients_are_counted_per_64() -> None:
    """One /64 is one household: its addresses share the per-address limit."""
    assert address_key("2001:db8:1:2::1") == address_key("2001:db8:1:2:ffff::9")
    assert address_key("2001:db8:1:2::1") != address_key("2001:db8:1:3::1")
    assert address_key("::ffff:192.0.2.7") == "192.0.2.7" == address_key("192.0.2.7")
    assert address_key("fe80::1%eth0") == address_key("fe80::2")


# Bounded welcomes and history pages.


async def fill(daemon: Running, count: int, size: int = 1900) -> None:
    """``count`` messages of about ``size`` characters, stored."""
    writer, _ = await join(daemon, "writer")
    for index in range(count):
        await say(writer, f"{index:04d} " + "x" * size)
        await recv_type(writer, "message")
    await writer.close()


async def test_welcome_is_bounded_and_a_resume_pages(daemon_factory: Any) -> None:
    """A welcome carries at most history_replay_bytes; a resume pages through the rest."""
    daemon = await daemon_factory(
        {"history_replay_bytes": 8192, "history_replay": 100, "rate_messages": 1000}
    )
    await fill(daemon, 40)
    fresh, welcome = await join(daemon, "fresh")
    sizes = sum(len(json.dumps(m, ensure_ascii=False)) for m in welcome["history"])
    assert sizes <= 8192 and welcome["more"] is False
    assert welcome["history"][-1]["id"] == 40 and len(welcome["history"]) == 4
    resumed, welcome = await join(daemon, "resumer", since=0)
    assert welcome["resumed"] is True and welcome["more"] is True
    seen = [m["id"] for m in welcome["history"]]
    assert seen[0] == 1
    more = True
    while more:
        await resumed.send(json.dumps({"type": "history", "after": seen[-1]}))
        page = await recv_type(resumed, "history")
        assert page["messages"], "a page always advances"
        seen += [m["id"] for m in page["messages"]]
        more = page["more"]
    assert seen == list(range(1, 41))
    await fresh.close()
    await resumed.close()


async def test_history_before_join_and_bad_after(daemon: Running) -> None:
    """history before join is not_joined; a bad after is bad_after; both keep the line."""
    ws = await open_client(daemon)
    await ws.send(json.dumps({"type": "history", "after": 0}))
    assert (await recv(ws))["code"] == "not_joined"
    await ws.send(json.dumps({"type": "join", "name": "a"}))
    await recv_type(ws, "welcome")
    await ws.send(json.dumps({"type": "history", "after": "x"}))
    assert (await recv(ws))["code"] == "bad_after"
    await ws.close()


async def test_huge_since_is_bad_since_not_bad_json(daemon: Running) -> None:
    """A since of 5,000 digits is a bad since (Python's int limit is not the answer)."""
    ws = await open_client(daemon)
    await ws.send('{"type":"join","name":"a","since":' + "9" * 5000 + "}")
    assert (await recv(ws))["code"] == "bad_since"
    await ws.close()


# Keepalive.


class PingCounter(ClientConnection):
    """A client connection that counts the pings it answers."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pings = 0

    def process_event(self, event: Any) -> None:
        if getattr(event, "opcode", None) is Opcode.PING:
            self.pings += 1
        super().process_event(event)


async def test_keepalive_does_not_stall_behind_a_slow_reader(daemon_factory: Any) -> None:
    """A client with a large unread welcome stops nobody's pings, and is closed itself."""
    daemon = await daemon_factory(
        {"ping_interval": 0.1, "rate_messages": 1000, "history_replay_bytes": 400_000}
    )
    await fill(daemon, 150)  # ~290 KB of history
    healthy = await connect(
        daemon.ws_url,
        subprotocols=["pichat.v1"],
        create_connection=PingCounter,  # type: ignore[list-item]
    )
    await healthy.send(json.dumps({"type": "join", "name": "healthy"}))
    await recv_type(healthy, "welcome")
    slow = await open_client(daemon)
    slow.transport.pause_reading()
    for client in daemon.server.outbox.clients:  # a small kernel buffer: the backlog stays ours
        if client.name is None:
            sock = client.connection.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    await slow.send(json.dumps({"type": "join", "name": "slow", "since": 0}))
    await eventually(lambda: _stalled(daemon, "slow"), "the slow client's buffer is full")
    start = healthy.pings  # type: ignore[attr-defined]
    await eventually(lambda: healthy.pings >= start + 3, "three more pings")  # type: ignore[attr-defined]
    await eventually(
        lambda: all(c.name != "slow" for c in daemon.server.outbox.clients), "slow one closed"
    )
    slow.transport.abort()
    await healthy.close()


def _stalled(daemon: Running, name: str) -> bool:
    try:
        client = server_client(daemon, name)
    except LookupError:
        return False
    return bool(client.connection.transport.get_write_buffer_size() > 32 * 1024)


# HTTP conformance.


async def test_head_gets_headers_only(daemon: Running) -> None:
    """HEAD answers the GET's status and headers, Content-Length included, no body."""
    status, get_headers, body = await raw_get(daemon, "/healthz")
    status_h, head_headers, head_body = await raw_get(daemon, "/", method="HEAD")
    _, index_headers, index_body = await raw_get(daemon, "/")
    assert status == status_h == 200
    assert head_body == b""
    assert head_headers["content-length"] == index_headers["content-length"] == str(len(index_body))
    assert head_headers["content-security-policy"] == index_headers["content-security-policy"]
    assert get_headers["content-type"] == "application/json"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"])
async def test_other_methods_get_405(daemon: Running, method: str) -> None:
    """Methods pichat does not serve get 405 with Allow, never the GET answer."""
    status, headers, _ = await raw_get(daemon, "/healthz", method=method)
    assert status == 405
    assert headers["allow"] == "GET, HEAD"


async def test_absolute_form_is_served_like_origin_form(daemon: Running) -> None:
    """GET http://host:port/healthz (a proxy's form) is the same as GET /healthz."""
    status, _, body = await raw_get(daemon, f"http://127.0.0.1:{daemon.port}/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"


async def test_request_head_is_bounded(daemon: Running) -> None:
    """160 KB of headers get 431; an unfinished 1 MB head is cut off at the limit."""
    big = "GET / HTTP/1.1\r\nHost: x\r\n" + "".join(
        f"X-Filler-{i}: {'a' * 1000}\r\n" for i in range(160)
    )
    status, _, _ = await raw_request(daemon.port, (big + "\r\n").encode())
    assert status == 431
    reader, writer = await asyncio.open_connection("127.0.0.1", daemon.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
    answer = asyncio.create_task(reader.read(64))
    sent = 0
    while sent < 1_000_000 and not answer.done():  # never finished
        writer.write(b"X-More: " + b"b" * 1000 + b"\r\n")
        await asyncio.wait_for(writer.drain(), TIMEOUT)
        sent += 1010
        await asyncio.sleep(0.001)
    assert (await asyncio.wait_for(answer, TIMEOUT)).startswith(b"HTTP/1.1 431")
    assert sent < 1_000_000, "the server read a megabyte of headers"
    writer.close()


async def test_healthz_says_only_the_asking_sites_room(daemon_factory: Any) -> None:
    """/healthz counts only the room of the site the Host picked."""
    daemon = await daemon_factory(
        {"sites": [{"server_names": ["other.example"], "room": "secret-room"}]}
    )
    _, _, body = await raw_get(daemon, "/healthz")
    assert json.loads(body)["online"] == {"lobby": 0}
    _, _, body = await raw_get(daemon, "/healthz", host="other.example")
    assert json.loads(body)["online"] == {"secret-room": 0}


# Log floods and storage faults.


async def test_refused_origins_do_not_flood_the_log(daemon: Running) -> None:
    """Fifty refused Origins log one line, not fifty."""
    for _ in range(50):
        with pytest.raises(InvalidStatus):
            await connect(daemon.ws_url, origin="https://evil.example", open_timeout=TIMEOUT)  # type: ignore[arg-type]
    assert daemon.log().count("not allowed") == 1


async def test_a_full_database_logs_once_reports_degraded_and_catches_up(
    daemon_factory: Any,
) -> None:
    """SQLITE_FULL: the log has one line, /healthz says 503, and nothing is lost.

    Messages are journaled before they are shown, so a database that cannot
    grow no longer makes every sender's message unavailable: they are shown,
    kept in the journal, and stored once the database takes writes again.
    """
    daemon = await daemon_factory({"rate_messages": 1000})
    store = daemon.server.history
    ws, _ = await join(daemon, "alice")
    await say(ws, "before")
    await recv_type(ws, "message")
    pages = await store._call(  # type: ignore[attr-defined]
        lambda: store._db.execute("PRAGMA page_count").fetchone()[0]  # type: ignore[attr-defined]
    )
    await store._call(  # type: ignore[attr-defined]
        lambda: store._db.execute(f"PRAGMA max_page_count = {pages}")  # type: ignore[attr-defined]
    )
    for index in range(30):
        await say(ws, f"kept {index} " + "z" * 1500)
        assert (await recv_type(ws, "message"))["text"].startswith(f"kept {index} ")
    await store.messages_after("lobby", 0, 1)  # the thread has tried them
    assert daemon.log().count("cannot store messages in") == 1
    status, _, body = await raw_get(daemon, "/healthz")
    assert status == 503 and json.loads(body)["status"] == "degraded"
    await store._call(  # type: ignore[attr-defined]
        lambda: store._db.execute("PRAGMA max_page_count = 1073741823")  # type: ignore[attr-defined]
    )
    await say(ws, "after")
    assert (await recv_type(ws, "message"))["text"] == "after"
    stored = await store.messages_after("lobby", 0, 100)
    assert [m.id for m in stored] == list(range(1, 33))
    assert "storing messages in" in daemon.log()
    status, _, _ = await raw_get(daemon, "/healthz")
    assert status == 200
    await ws.close()


# DNS rebinding.


async def test_server_names_refuse_a_rebinding_host(daemon_factory: Any) -> None:
    """With server_names set, an upgrade for a foreign Host is refused; names and IPs pass."""
    daemon = await daemon_factory({"server_names": ["pichat.lan"]})
    port = daemon.port
    status, _, _ = await raw_request(
        port, upgrade_request(port, f"attacker.example:{port}", f"http://attacker.example:{port}")
    )
    assert status == 421
    status, _, _ = await raw_get(daemon, "/", host="attacker.example")
    assert status == 200  # the page is public; only the chat is refused
    for host in ("pichat.lan", "127.0.0.1", "[::1]"):
        ws = await open_client(daemon, host=host)
        await ws.close()
    open_daemon = await daemon_factory()
    ws = await open_client(open_daemon, host="attacker.example")  # default: any Host
    await ws.close()


# Epochs.


async def test_a_replaced_database_is_a_new_epoch(tmp_path: Path) -> None:
    """A database swapped under a restart: the old cursor gets the full replay, not a skip."""
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    config = {"rate_messages": 1000}
    async with running(first, config) as daemon:
        await fill(daemon, 5, size=10)
        ws, welcome = await join(daemon, "reader")
        old_epoch = welcome["epoch"]
        assert [m["id"] for m in welcome["history"]] == [1, 2, 3, 4, 5]
        await ws.close()
    async with running(first, config) as daemon:  # a plain restart keeps the epoch
        ws, welcome = await join(daemon, "reader", since=5, epoch=old_epoch)
        assert welcome["epoch"] == old_epoch and welcome["resumed"] is True
        await ws.close()
    async with running(second, config) as daemon:
        await fill(daemon, 12, size=10)
    for suffix in ("", "-wal", "-shm"):
        target = first / "state" / f"history.sqlite3{suffix}"
        target.unlink(missing_ok=True)
        source = second / "state" / f"history.sqlite3{suffix}"
        if source.exists():
            shutil.copy(source, target)
    async with running(first, config) as daemon:
        ws, welcome = await join(daemon, "reader", since=5, epoch=old_epoch)
        assert welcome["epoch"] != old_epoch
        assert welcome["resumed"] is False and welcome["gap"] is True
        assert [m["id"] for m in welcome["history"]] == list(range(1, 13))
        await ws.close()
