"""The daemon as a process: restart, kill -9, SIGTERM; what survives and what clients see."""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from tests.conftest import join, open_client, recv, recv_type, say
from tests.daemon import TIMEOUT, Daemon
from tests.http import http_get


@pytest.fixture
def daemon_factory(process_factory: Any) -> Any:
    """This module is about the process: every daemon here is a subprocess."""
    return process_factory


@pytest.fixture
def daemon(process: Daemon) -> Daemon:
    """A daemon subprocess."""
    return process


async def test_history_and_ids_survive_restart(daemon_factory: Any) -> None:
    """After a restart the history is still there and ids continue where they were."""
    daemon = daemon_factory()
    ws, _ = await join(daemon, "alice")
    await say(ws, "before")
    await recv_type(ws, "message")
    await ws.close()
    daemon.restart()
    ws, welcome = await join(daemon, "alice")
    assert [(m["id"], m["text"]) for m in welcome["history"]] == [(1, "before")]
    await say(ws, "after")
    assert (await recv_type(ws, "message"))["id"] == 2
    await ws.close()


async def test_kill_9_loses_no_message_anyone_saw(daemon_factory: Any) -> None:
    """Every message a client received before a SIGKILL is in the history afterwards."""
    daemon = daemon_factory({"rate_messages": 1000})
    ws, _ = await join(daemon, "alice")
    seen = []
    for index in range(50):
        await say(ws, f"m{index}")
    for _ in range(50):
        seen.append((await recv_type(ws, "message"))["id"])
    daemon.kill()
    daemon.start()
    reader, welcome = await join(daemon, "bob", since=0)
    assert [m["id"] for m in welcome["history"]][: len(seen)] == seen
    await reader.close()


async def test_reconnect_after_restart_resumes_without_loss_or_duplicate(
    daemon_factory: Any,
) -> None:
    """A client that reconnects after a restart with since gets what it missed, once each."""
    daemon = daemon_factory({"rate_messages": 1000})
    reader, _ = await join(daemon, "reader")
    writer, _ = await join(daemon, "writer")
    received: list[int] = []
    for index in range(5):
        await say(writer, f"a{index}")
    for _ in range(5):
        received.append((await recv_type(reader, "message"))["id"])
    daemon.stop()
    with pytest.raises(ConnectionClosed):
        await recv(reader)
    assert reader.close_code == 1001
    daemon.start()
    writer, _ = await join(daemon, "writer")
    for index in range(5):
        await say(writer, f"b{index}")
    for _ in range(5):
        await recv_type(writer, "message")
    reader, welcome = await join(daemon, "reader", since=received[-1])
    received += [m["id"] for m in welcome["history"]]
    assert received == list(range(1, 11))
    await writer.close()
    await reader.close()


async def test_sigterm_closes_clients_with_1001_and_exits_0(daemon: Daemon) -> None:
    """On SIGTERM every client gets close code 1001 and the daemon exits 0."""
    ws, _ = await join(daemon, "alice")
    legacy = await open_client(daemon, "echo-protocol")
    assert daemon.stop() == 0
    for client in (ws, legacy):
        with pytest.raises(ConnectionClosed):
            while True:
                await asyncio.wait_for(client.recv(), TIMEOUT)
        assert client.close_code == 1001


async def test_slow_reader_is_dropped_and_delays_nobody(daemon_factory: Any) -> None:
    """A client that stops reading is disconnected once its queue is full; others get all.

    A subprocess: in one event loop the test's readers would compete with the
    server for the same CPU and fall behind for real.
    """
    daemon = daemon_factory(
        {
            "send_queue_bytes": 65536,
            "max_message_length": 40000,
            "max_frame_bytes": 262144,
            "rate_messages": 100000,
        }
    )
    slow, _ = await join(daemon, "slow")
    reader, _ = await join(daemon, "reader")
    writer, _ = await join(daemon, "writer")
    slow.transport.pause_reading()  # stops reading: the kernel buffers fill up
    count = 600  # 18 MB: more than loopback's socket buffers can absorb

    received: list[list[str]] = [[], []]

    async def collect(ws: Any, texts: list[str]) -> list[str]:
        while len(texts) < count:
            texts.append((await recv_type(ws, "message", timeout=TIMEOUT * 3))["text"][:5])
        return texts

    readers = [
        asyncio.create_task(collect(ws, texts))
        for ws, texts in zip((reader, writer), received, strict=True)
    ]
    for index in range(count):
        # The readers keep up (at most 20 messages, 600 kB, behind): they share
        # this process with the writer, and a server faster than they read
        # would rightly drop them too.
        while min(map(len, received)) < index - 20:
            await asyncio.sleep(0.001)
        await say(writer, f"{index:05d}" + "x" * 30000)
    expected = [f"{i:05d}" for i in range(count)]
    assert await asyncio.gather(*readers) == [expected, expected]
    for _ in range(100):
        health = json.loads(await http_get(daemon, "/healthz"))
        if health["online"]["lobby"] == 2:
            break
        await asyncio.sleep(0.05)
    assert health["online"]["lobby"] == 2
    assert "too slow: send queue full" in daemon.log()
    slow.transport.abort()
    await reader.close()
    await writer.close()


def test_port_in_use_is_one_line_and_exit_69(tmp_path: Path) -> None:
    """A taken port: one log line naming the address, exit 69, the history closed cleanly."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        directory = tmp_path / "busy"
        directory.mkdir()
        daemon = Daemon(directory, {"port": port})
        daemon.start(wait=False)
        assert daemon.process is not None
        code = daemon.process.wait(TIMEOUT)
        daemon.stop()
    log = daemon.log()
    assert code == 69, log
    assert f"cannot listen on 127.0.0.1:{port}: " in log
    assert "Traceback" not in log
    # The store was opened before the bind failed, and closed after it.
    state = directory / "state"
    assert (state / "history.sqlite3").exists()
    assert not (state / "history.sqlite3-wal").exists()


def test_damaged_database_is_one_line_and_exit_73(process_factory: Any) -> None:
    """A zeroed b-tree root page (header intact): one clear line, exit 73, no traceback."""
    daemon: Daemon = process_factory({"rate_messages": 100})
    asyncio.run(_say_some(daemon, 20))
    assert daemon.stop() == 0
    path = daemon.directory / "state" / "history.sqlite3"
    db = sqlite3.connect(path)
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    root = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'messages'").fetchone()[0]
    db.close()
    with path.open("r+b") as file:
        file.seek((root - 1) * page_size)
        file.write(b"\0" * page_size)
    daemon.start(wait=False)
    assert daemon.process is not None
    code = daemon.process.wait(TIMEOUT)
    daemon.stop()  # closes the notify socket
    log = daemon.log()
    assert code == 73, log
    assert "Traceback" not in log
    line = next(line for line in log.splitlines() if "cannot open the history" in line)
    assert "integrity check" in line and "restore a backup" in line


async def _say_some(daemon: Daemon, count: int) -> None:
    ws, _ = await join(daemon, "writer")
    for index in range(count):
        await say(ws, f"m{index}")
        await recv_type(ws, "message")
    await ws.close()
