"""The control socket: ``pichat ctl`` talks to the running daemon over a Unix socket.

One JSON object per line each way, one request per connection:
``{"command": "kick", "room": "lobby", "name": "bob"}`` is answered
``{"ok": true, "result": {...}}`` or ``{"ok": false, "code": ..., "error": ...}``.
The socket is mode 0600, so only the daemon's user (and root) may moderate
through it; it is the one place a client's address is shown (``who``).

Actions go through the same :meth:`pichat.moderation.Moderation.act` as a
moderator's frames, so the rules, the log and the error codes are the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ProtocolError
from .protocol import format_date

if TYPE_CHECKING:
    from .chat import Chat

__all__ = ["ControlError", "ControlServer", "request"]

logger = logging.getLogger(__name__)

#: Who the moderation log names for actions taken through the socket.
ACTOR = "pichat ctl"
MAX_REQUEST = 64 * 1024
#: ctl command -> the moderation action it is.
ACTIONS: dict[str, str] = {
    "delete": "delete",
    "clear": "clear",
    "kick": "kick",
    "ban": "ban",
    "unban": "unban",
    "mute": "mute",
    "lock": "lock",
    "unlock": "lock",
    "slow": "slow",
}


class ControlError(Exception):
    """The daemon cannot be reached, or it refused the request."""


#: sun_path holds 108 bytes with its final NUL.
_SUN_PATH = 107


@contextlib.contextmanager
def _reachable(path: Path) -> Iterator[str]:
    """A name for ``path`` that fits in a socket address.

    A longer path is reached through ``/proc/self/fd`` and an open handle on its
    directory (Linux), so any state directory works.
    """
    if len(os.fsencode(path)) <= _SUN_PATH:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


class ControlServer:
    """Answers ``pichat ctl`` on a Unix socket, for one chat engine.

    Args:
        path: where the socket is made (a stale file there is replaced).
        chat: the engine whose rooms are moderated.
    """

    def __init__(self, path: Path, chat: Chat[Any]) -> None:
        self.path = path
        self.chat = chat
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Bind the socket, mode 0600."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(self.path.lstat().st_mode):
                self.path.unlink()  # left by a daemon that did not stop cleanly
        # Bound under a umask that leaves no moment when others could connect.
        old = os.umask(0o177)
        try:
            with _reachable(self.path) as name:
                self._server = await asyncio.start_unix_server(
                    self._serve, path=name, limit=MAX_REQUEST
                )
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        logger.info("control socket %s", self.path)

    async def close(self) -> None:
        """Stop answering and remove the socket."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            try:
                answer = {"ok": True, "result": await self.answer(json.loads(line))}
            except ProtocolError as exc:
                answer = {"ok": False, "code": exc.code, "error": exc.detail}
            except (ValueError, TypeError, KeyError) as exc:
                answer = {"ok": False, "code": "bad_frame", "error": f"bad request: {exc}"}
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except Exception:  # one bad control connection must not stop the daemon
            logger.warning("control request failed", exc_info=True)
        finally:
            writer.close()

    async def answer(self, request: dict[str, Any]) -> Any:
        """The result of one request; raises :class:`ProtocolError` for a bad one."""
        command = request["command"]
        if command == "who":
            return self._who(request.get("room"))
        if command == "bans":
            moderation = self.chat.moderation
            return [
                {
                    "address": ban.address,
                    "name": ban.label,
                    "until": format_date(ban.until_ms) if ban.until_ms else None,
                    "reason": ban.reason,
                    "room": ban.room,
                    "by": ban.by,
                }
                for ban in moderation.bans.active(self.chat.wall_ms())
            ]
        if command == "log":
            entries = await self.chat.history.load_log(int(request.get("since_ms", 0)), 1000)
            return [
                {
                    "date": format_date(e.ms),
                    "room": e.room,
                    "actor": e.actor,
                    "action": e.action,
                    "detail": json.loads(e.detail),
                }
                for e in entries
            ]
        if command == "announce":
            room = self._room(request.get("room"))
            return self.chat.moderation.announce(ACTOR, room, request.get("text"))
        action = ACTIONS.get(command)
        if action is None:
            raise ProtocolError("unknown_type", f"unknown command {str(command)[:40]!r}")
        fields = {k: v for k, v in request.items() if k not in ("command", "room")}
        if command in ("lock", "unlock"):
            fields["locked"] = command == "lock"
        return self.chat.moderation.act(ACTOR, self._room(request.get("room")), action, fields)

    def _room(self, name: object) -> Any:
        rooms = self.chat.rooms
        if name is None and rooms:
            return next(iter(rooms.values()))  # unban: daemon-wide, logged in the first room
        room = rooms.get(name) if isinstance(name, str) else None
        if room is None:
            raise ProtocolError("bad_frame", f"no room {str(name)[:64]!r}; rooms: {sorted(rooms)}")
        return room

    def _who(self, room_name: object) -> list[dict[str, Any]]:
        rooms = self.chat.rooms
        picked = [self._room(room_name)] if room_name is not None else list(rooms.values())
        people = []
        for room in picked:
            for member, (name, _) in room.members.items():
                people.append(
                    {
                        "room": room.name,
                        "name": name,
                        "moderator": member in room.moderators,
                        "joined": format_date(member.joined_ms),
                        "address": member.address,
                    }
                )
        return people


def request(path: Path, payload: dict[str, Any], timeout: float = 10.0) -> Any:
    """Send one request to the daemon's control socket; its result.

    Raises:
        ControlError: the daemon is not running, the socket is not accessible,
            or the daemon refused the request (its code and reason).
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            with _reachable(path) as name:
                sock.connect(name)
        except OSError as exc:
            hint = "is pichat running?" if not path.exists() else "are you its user or root?"
            raise ControlError(
                f"cannot reach the daemon at {path}: {exc.strerror or exc} ({hint})"
            ) from None
        sock.sendall(json.dumps(payload).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError as exc:
        raise ControlError(f"the daemon did not answer: {exc}") from None
    finally:
        sock.close()
    try:
        answer = json.loads(data)
    except ValueError:
        raise ControlError("the daemon's answer is not JSON") from None
    if not answer.get("ok"):
        raise ControlError(f"{answer.get('code')}: {answer.get('error')}")
    return answer.get("result")


def describe(command: str, result: Any) -> str:
    """A result as ``pichat ctl`` prints it for a person (``--json`` prints it raw)."""
    if command == "who":
        if not result:
            return "nobody online"
        return "\n".join(
            f"{p['room']}\t{p['name']}{' (moderator)' if p['moderator'] else ''}\t"
            f"joined {p['joined']}\t{p['address'] or '-'}"
            for p in result
        )
    if command == "bans":
        if not result:
            return "no bans"
        return "\n".join(
            f"{b['address'] or '-'}\t{b['name'] or '-'}\tuntil {b['until'] or 'lifted'}\t"
            f"{b['room']} by {b['by']}\t{b['reason']}"
            for b in result
        )
    if command == "log":
        if not result:
            return "no moderation actions"
        return "\n".join(
            f"{e['date']}\t{e['room']}\t{e['actor']}\t{e['action']}\t"
            + " ".join(f"{k}={v!r}" for k, v in e["detail"].items())
            for e in result
        )
    details = " ".join(f"{k}={v!r}" for k, v in result.items())
    return f"{command}: done {details}".rstrip()
