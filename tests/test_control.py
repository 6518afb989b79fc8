"""pichat ctl and the control socket, against a real in-process daemon.

The client half (:func:`pichat.control.request`) is blocking, as the command
is: it runs in a thread while the daemon answers in the test's loop.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus

from pichat.cli import _ctl_request, _parser
from pichat.control import ControlError, _reachable, describe, request
from tests.conftest import open_client, recv_type, say
from tests.daemon import TIMEOUT
from tests.harness import running
from tests.test_moderation_server import BOB, CONFIG, closed, join, moderator


async def ctl(daemon: Any, **payload: Any) -> Any:
    """One control request to the daemon, from a thread."""
    path = daemon.daemon.settings.control_path()
    return await asyncio.to_thread(request, path, payload)


def ctl_args(*argv: str) -> dict[str, Any]:
    """The request ``pichat ctl ARGV`` sends."""
    return _ctl_request(_parser().parse_args(["ctl", *argv]))


async def test_socket_is_private_and_removed_at_stop(tmp_path: Path) -> None:
    """The socket is mode 0600 while the daemon runs, and gone after it stopped."""
    async with running(tmp_path, CONFIG) as daemon:
        path = daemon.daemon.settings.control_path()
        mode = path.stat().st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    assert not path.exists()


async def test_who_shows_names_join_times_and_addresses(daemon_factory: Any) -> None:
    """who lists everyone online with the address; a room filter works."""
    daemon = await daemon_factory(CONFIG)
    await join(daemon, "bob", BOB)
    await moderator(daemon)
    people = await ctl(daemon, command="who", room="lobby")
    assert [(p["name"], p["moderator"], p["address"]) for p in people] == [
        ("bob", False, "127.0.0.2"),
        ("Alice", True, "127.0.0.1"),
    ]
    assert "bob\tjoined " in describe("who", people)
    with pytest.raises(ControlError, match="no room 'nowhere'"):
        await ctl(daemon, command="who", room="nowhere")


async def test_kick_ban_bans_unban_and_the_log(daemon_factory: Any) -> None:
    """Actions from ctl act like a moderator's and are kept in the moderation log."""
    daemon = await daemon_factory(CONFIG)
    bob, _ = await join(daemon, "bob", BOB)
    carol, _ = await join(daemon, "carol")
    assert await ctl(daemon, **ctl_args("kick", "lobby", "bob", "--reason", "out")) == {
        "name": "bob",
        "reason": "out",
    }
    assert await closed(bob) == (4001, "out")
    bob, _ = await join(daemon, "bob", BOB)
    await ctl(daemon, **ctl_args("ban", "lobby", "bob", "--minutes", "0"))
    assert (await closed(bob))[0] == 4003
    bans = await ctl(daemon, command="bans")
    assert [(b["address"], b["name"], b["until"], b["by"]) for b in bans] == [
        ("127.0.0.2", "bob", None, "pichat ctl")
    ]
    await ctl(daemon, **ctl_args("unban", "127.0.0.2"))
    assert await ctl(daemon, command="bans") == []
    await ctl(daemon, **ctl_args("lock", "lobby"))
    assert (await recv_type(carol, "room"))["locked"] is True
    await say(carol, "hello")
    assert (await recv_type(carol, "error"))["code"] == "room_locked"
    log = await ctl(daemon, **ctl_args("log", "--since", "1h"))
    assert [(e["actor"], e["action"]) for e in log] == [
        ("pichat ctl", "kick"),
        ("pichat ctl", "ban"),
        ("pichat ctl", "unban"),
        ("pichat ctl", "lock"),
    ]
    assert "\tpichat ctl\tkick\tname='bob'" in describe("log", log)


async def test_ban_an_address_that_is_not_online(daemon_factory: Any) -> None:
    """ban ROOM ADDRESS bans the address whoever is behind it: 403 at the handshake."""
    daemon = await daemon_factory(CONFIG)
    assert ctl_args("ban", "lobby", "127.0.0.2")["address"] == "127.0.0.2"
    await ctl(daemon, **ctl_args("ban", "lobby", "127.0.0.2", "--minutes", "5"))
    with pytest.raises(InvalidStatus):
        await open_client(daemon, **BOB)


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (("kick", "lobby", "nobody"), "no_member"),
        (("delete", "lobby", "99"), "no_message"),
        (("ban", "lobby", "bob", "--minutes", "-1"), "bad_minutes"),
        (("unban", "192.0.2.1"), "no_ban"),
        (("slow", "lobby", "99999"), "bad_seconds"),
    ],
)
async def test_refused_requests_name_the_code(daemon_factory: Any, argv: Any, code: str) -> None:
    """A bad ctl request is refused with the moderation error code; nothing changes."""
    daemon = await daemon_factory(CONFIG)
    await join(daemon, "bob", BOB)
    with pytest.raises(ControlError, match=code):
        await ctl(daemon, **ctl_args(*argv))
    assert len(await ctl(daemon, command="who")) == 1


def _raw(path: Path, data: bytes) -> Any:
    """Send raw bytes to the control socket; the decoded answer."""
    with _reachable(path) as name, socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(TIMEOUT)
        sock.connect(name)
        sock.sendall(data)
        return json.loads(sock.makefile("rb").readline())


async def test_garbage_on_the_socket_is_refused(daemon: Any) -> None:
    """A request that is not JSON, or an unknown command, gets an error answer."""
    path = daemon.daemon.settings.control_path()
    answer = await asyncio.to_thread(_raw, path, b"not json\n")
    assert answer["ok"] is False and answer["code"] == "bad_frame"
    with pytest.raises(ControlError, match="unknown_type"):
        await ctl(daemon, command="reboot")


def test_ctl_against_a_stopped_daemon_says_so(tmp_path: Path) -> None:
    """pichat ctl with no daemon: a clear message and exit 69."""
    run = subprocess.run(
        [sys.executable, "-m", "pichat", "ctl", "who"],
        env={**os.environ, "PICHAT_CONFIG": "", "PICHAT_STATE_DIR": str(tmp_path)},
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert run.returncode == 69
    assert "cannot reach the daemon" in run.stderr and "is pichat running?" in run.stderr


async def test_announce_is_a_message_from_the_room(daemon_factory: Any) -> None:
    """announce ROOM TEXT: a stored message named after the room, marked announcement."""
    daemon = await daemon_factory(CONFIG)
    carol, _ = await join(daemon, "carol")
    done = await ctl(daemon, **ctl_args("announce", "lobby", "maintenance at 10"))
    message = await recv_type(carol, "message")
    assert message["id"] == done["id"] and message["announcement"] is True
    assert (message["name"], message["text"]) == ("lobby", "maintenance at 10")
    with pytest.raises(ControlError, match="empty_text"):
        await ctl(daemon, **ctl_args("announce", "lobby", "  "))
