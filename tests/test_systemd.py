"""systemd integration outside a container: real NOTIFY_SOCKET, signals, inherited sockets."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from tests.conftest import join, recv_type, say
from tests.daemon import TIMEOUT, Daemon, Endpoint, NotifyListener, render_toml
from tests.http import raw_get


@pytest.fixture
def daemon_factory(process_factory: Any) -> Any:
    """This module is about the process: every daemon here is a subprocess."""
    return process_factory


@pytest.fixture
def daemon(process: Daemon) -> Daemon:
    """A daemon subprocess."""
    return process


async def test_ready_then_status_then_stopping(daemon: Daemon) -> None:
    """READY=1 comes with a STATUS; a connection updates STATUS; SIGTERM sends STOPPING=1."""
    assert daemon.notify is not None
    ready = next(m for m in daemon.notify.messages if m.get("READY") == "1")
    assert "connections" in ready["STATUS"]
    ws, _ = await join(daemon, "alice")
    status = daemon.notify.wait_for("STATUS", "1 connections, 1 online, 1 rooms")
    assert status
    notify = daemon.notify
    daemon.signal(signal.SIGTERM)
    assert notify.wait_for("STOPPING", "1")
    assert daemon.stop() == 0
    await ws.close()


async def test_ready_only_after_the_port_accepts(daemon_factory: Any) -> None:
    """By the time READY=1 arrives, the port answers HTTP."""
    daemon = daemon_factory()
    status, _, _ = await raw_get(daemon, "/healthz")
    assert status == 200


def test_watchdog_pings_at_half_the_interval(tmp_path: Path) -> None:
    """With WATCHDOG_USEC set, WATCHDOG=1 arrives repeatedly from the running loop."""
    daemon = Daemon(tmp_path, env={"WATCHDOG_USEC": "400000"})
    with daemon:
        assert daemon.notify is not None
        first = daemon.notify.wait_for("WATCHDOG", "1")
        second = daemon.notify.wait_for("WATCHDOG", "1")
        third = daemon.notify.wait_for("WATCHDOG", "1")
        assert first and second and third


def test_watchdog_stays_off_for_another_pid(tmp_path: Path) -> None:
    """WATCHDOG_PID naming another process means the watchdog is not ours: no pings."""
    daemon = Daemon(tmp_path, env={"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"})
    with daemon:
        assert daemon.notify is not None
        time.sleep(0.5)  # several watchdog periods: none may arrive
        assert not any("WATCHDOG" in m for m in daemon.notify.drain())


def test_stuck_loop_stops_watchdog_pings(tmp_path: Path) -> None:
    """A stopped (SIGSTOP) daemon sends no WATCHDOG=1, which is what systemd detects."""
    daemon = Daemon(tmp_path, env={"WATCHDOG_USEC": "200000"})
    with daemon:
        assert daemon.notify is not None and daemon.process is not None
        daemon.notify.wait_for("WATCHDOG", "1")
        daemon.signal(signal.SIGSTOP)
        time.sleep(0.1)
        daemon.notify.drain()
        before = len(daemon.notify.messages)
        time.sleep(0.5)
        assert len(daemon.notify.drain()) == before
        daemon.signal(signal.SIGCONT)
        daemon.notify.wait_for("WATCHDOG", "1")


async def test_reload_applies_new_title_and_keeps_clients(daemon: Daemon) -> None:
    """SIGHUP: RELOADING=1 with MONOTONIC_USEC, then READY=1, a new title, the same client."""
    assert daemon.notify is not None
    ws, _ = await join(daemon, "alice")
    daemon.config["title"] = "Renamed room"
    daemon.config["rate_messages"] = 50
    daemon.write_config()
    before = time.monotonic_ns() // 1000
    daemon.signal(signal.SIGHUP)
    reloading = daemon.notify.wait_for("RELOADING", "1")
    assert int(reloading["MONOTONIC_USEC"]) >= before
    daemon.notify.wait_for("READY", "1")
    _, _, body = await raw_get(daemon, "/site.json")
    assert json.loads(body)["title"] == "Renamed room"
    assert json.loads(body)["limits"]["rate_messages"] == 50
    await say(ws, "still connected")
    assert (await recv_type(ws, "message"))["text"] == "still connected"
    other, welcome = await join(daemon, "bob")
    assert welcome["title"] == "Renamed room"
    await ws.close()
    await other.close()


async def test_bad_reload_keeps_the_running_config(daemon: Daemon) -> None:
    """A reload with a broken config logs the reason and keeps serving the old config."""
    assert daemon.notify is not None
    ws, _ = await join(daemon, "alice")
    daemon.write_config(raw=render_toml(daemon.config) + 'max_name_length = "long"\n')
    daemon.signal(signal.SIGHUP)
    daemon.notify.wait_for("RELOADING", "1")
    daemon.notify.wait_for("READY", "1")
    assert "reload failed" in daemon.log() and "max_name_length" in daemon.log()
    await say(ws, "old config still running")
    assert (await recv_type(ws, "message"))["text"] == "old config still running"
    _, _, body = await raw_get(daemon, "/site.json")
    assert json.loads(body)["limits"]["name"] == 32
    await ws.close()


async def test_reload_port_change_is_logged_as_needing_restart(daemon: Daemon) -> None:
    """A new port on reload is not applied live: it is logged as needing a restart."""
    assert daemon.notify is not None
    old_port = daemon.port
    daemon.config["port"] = old_port + 1
    daemon.write_config()
    daemon.signal(signal.SIGHUP)
    daemon.notify.wait_for("READY", "1")
    assert "restart pichat to apply it" in daemon.log()
    status, _, _ = await raw_get(daemon, "/healthz")  # still on the old port
    assert status == 200


async def test_reload_adds_a_site_with_a_new_room(daemon: Daemon) -> None:
    """A site added by reload serves its own room at once."""
    assert daemon.notify is not None
    daemon.config["sites"] = [{"server_names": ["new.example"], "room": "new", "title": "New"}]
    daemon.write_config()
    daemon.signal(signal.SIGHUP)
    daemon.notify.wait_for("READY", "1")
    ws, welcome = await join(daemon, "n", host="new.example")
    assert (welcome["room"], welcome["title"]) == ("new", "New")
    await ws.close()


def _activated(
    tmp_path: Path, sock: socket.socket, config: dict[str, Any]
) -> tuple[subprocess.Popen[bytes], NotifyListener]:
    """Start pichat the way systemd does for socket activation: the socket as fd 3."""
    config_file = tmp_path / "pichat.toml"
    config_file.write_text(render_toml(config))
    notify = NotifyListener(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PICHAT_", "LISTEN_"))}
    env.update(NOTIFY_SOCKET=notify.path, LISTEN_FDS="1")
    fd = sock.fileno()
    # As systemd does: the socket becomes fd 3 and LISTEN_PID names the daemon,
    # which is this wrapper's pid since it exec()s the daemon.
    wrapper = (
        "import os, sys; "
        f"os.dup2({fd}, 3, inheritable=True); os.close({fd}); "
        "os.environ['LISTEN_PID'] = str(os.getpid()); "
        "os.execv(sys.executable, [sys.executable, '-m', 'pichat', *sys.argv[1:]])"
    )
    with (tmp_path / "log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", wrapper, "serve", "--config", str(config_file)],
            env=env,
            pass_fds=(fd,),
            stderr=log,
        )
    notify.wait_for("READY", "1")
    return process, notify


async def test_socket_activation_serves_the_inherited_socket(tmp_path: Path) -> None:
    """With LISTEN_FDS the daemon serves systemd's socket, not the configured port."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    config = {
        "host": "127.0.0.1",
        "port": 1,  # would fail to bind: proves the inherited socket is used
        "state_dir": str(tmp_path / "state"),
        "document_root": str(Path(__file__).resolve().parent.parent / "public"),
    }
    process, notify = _activated(tmp_path, listener, config)
    try:
        daemon = Endpoint(port)
        status, _, _ = await raw_get(daemon, "/healthz")
        assert status == 200
        ws, welcome = await join(daemon, "alice")
        assert welcome["you"]["name"] == "alice"
        await say(ws, "via systemd's socket")
        first_id = (await recv_type(ws, "message"))["id"]
        # A restart under socket activation refuses nothing: the socket stays open here.
        process.send_signal(signal.SIGTERM)
        assert process.wait(TIMEOUT) == 0
        with pytest.raises(ConnectionClosed):
            await recv_type(ws, "message")
        pending = asyncio.ensure_future(join(daemon, "alice", since=first_id))
        await asyncio.sleep(0.2)  # the connection waits in the backlog meanwhile
        notify.close()
        process, notify = _activated(tmp_path, listener, config)
        ws, welcome = await asyncio.wait_for(pending, TIMEOUT)
        assert welcome["resumed"] is True and welcome["history"] == []
        await ws.close()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(TIMEOUT)
        notify.close()
        listener.close()


def test_journal_priority_prefixes_under_systemd(tmp_path: Path) -> None:
    """When stderr is the journal stream (JOURNAL_STREAM matches), lines carry <N> prefixes."""
    daemon = Daemon(tmp_path)
    daemon.log_path.touch()
    info = os.stat(daemon.log_path)
    daemon.extra_env = {"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}
    with daemon:
        pass
    lines = [line for line in daemon.log().splitlines() if line]
    assert lines and all(line.startswith("<") for line in lines), lines
    assert any(line.startswith("<6>pichat.app: listening on") for line in lines)


def test_plain_log_lines_outside_systemd(daemon: Daemon) -> None:
    """Without JOURNAL_STREAM the log lines have no priority prefix."""
    assert "INFO pichat.app: listening on 127.0.0.1" in daemon.log()
    assert "<6>" not in daemon.log()


async def test_unread_notify_socket_never_stalls_the_daemon(tmp_path: Path) -> None:
    """When nobody reads NOTIFY_SOCKET and its queue is full, chat goes on (drops, no block)."""
    daemon = Daemon(tmp_path, env={"WATCHDOG_USEC": "20000"})  # a ping every 10 ms
    with daemon:
        await asyncio.sleep(1.0)  # the listener reads nothing: its queue fills up
        ws, _ = await join(daemon, "alice")
        await say(ws, "not stalled")
        assert (await recv_type(ws, "message"))["text"] == "not stalled"
        await ws.close()
        assert "notify socket full" in daemon.log()
