"""A minimal ``pichat.v1`` client for the browser tests: the "other people" in the room."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import ssl
import threading
from collections.abc import Coroutine, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, TypeVar

from websockets.asyncio.client import ClientConnection as AsyncConnection
from websockets.asyncio.client import connect as async_connect
from websockets.protocol import State
from websockets.sync.client import ClientConnection, connect

from tests.daemon import TIMEOUT, Daemon

T = TypeVar("T")

SUBPROTOCOL = "pichat.v1"


class Refused(Exception):
    """The server answered with an ``error`` frame."""

    def __init__(self, frame: dict[str, Any]) -> None:
        self.frame = frame
        super().__init__(f"{frame.get('code')}: {frame.get('detail')}")


class ChatClient:
    """One joined connection; frames that are not awaited are kept in ``frames``.

    Args:
        url: the daemon's ``ws://`` (or ``wss://``) URL.
        name: the name to join with.
        avatar: the avatar URL (may be empty).
        since: the resume cursor (``None`` for a fresh join).
        password: a moderator's password.
        tls: the client context for a ``wss://`` URL (one that trusts the test CA).
    """

    def __init__(
        self,
        url: str,
        name: str,
        avatar: str = "",
        since: int | None = None,
        password: str | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.frames: list[dict[str, Any]] = []
        # Entered as a context manager: websockets 17 warns about a bare connect().
        self._stack = ExitStack()
        self.ws: ClientConnection = self._stack.enter_context(
            connect(
                url,
                ssl=tls,
                subprotocols=[SUBPROTOCOL],
                open_timeout=TIMEOUT,
                close_timeout=TIMEOUT,
            )
        )
        try:
            hello = {"type": "join", "name": name, "avatar": avatar, "since": since}
            if password is not None:
                hello["password"] = password
            self.send(hello)
            self.welcome = self.expect("welcome")
        except BaseException:
            self._stack.close()
            raise
        self.name: str = self.welcome["you"]["name"]

    def send(self, frame: dict[str, Any]) -> None:
        """Send one JSON frame."""
        self.ws.send(json.dumps(frame))

    def receive(self) -> dict[str, Any]:
        """The next frame (raises TimeoutError after TIMEOUT)."""
        frame: dict[str, Any] = json.loads(self.ws.recv(timeout=TIMEOUT))
        return frame

    def expect(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Read until a frame of ``kind`` with these fields; an error frame raises Refused."""
        while True:
            frame = self.receive()
            if frame["type"] == "error":
                raise Refused(frame)
            if frame["type"] == kind and all(frame.get(k) == v for k, v in fields.items()):
                return frame
            self.frames.append(frame)

    def say(self, text: str) -> dict[str, Any]:
        """Send a message and return it as stored (with its id) once it comes back."""
        self.send({"type": "say", "text": text})
        return self.expect("message", name=self.name, text=text)

    def close(self) -> None:
        """Close the connection."""
        self._stack.close()

    def __enter__(self) -> ChatClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def stored_history(url: str) -> list[dict[str, Any]]:
    """Every message the daemon keeps, oldest first, as a client resuming from 0 sees it.

    A resume is paged (``history_replay`` messages at a time): the pages are read
    until the server says there are no more.
    """
    with ChatClient(url, "auditor", since=0) as client:
        history: list[dict[str, Any]] = list(client.welcome["history"])
        more = client.welcome.get("more", False)
        while more and history:
            client.send({"type": "history", "after": history[-1]["id"]})
            page = client.expect("history")
            history += page["messages"]
            more = page["more"]
        return history


@contextmanager
def paused(daemon: Daemon) -> Iterator[None]:
    """The daemon stopped (SIGSTOP, every thread of it) inside the block, resumed after."""
    assert daemon.process is not None
    pid = daemon.process.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        # kill() returns before the signal has stopped the threads: wait until it has.
        tasks = Path(f"/proc/{pid}/task")
        while not all(_stopped(task / "stat") for task in tasks.iterdir()):
            threading.Event().wait(0.001)
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def _stopped(stat: Path) -> bool:
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] in ("T", "t")
    except FileNotFoundError:  # a thread that ended
        return True


class Crowd:
    """Other people who join, and later leave, all in one presence tick.

    Sending their frames together is not enough: the daemon handles each one as
    it arrives, and on a loaded machine they spread over more than one 50 ms
    tick. So the daemon is paused (:func:`paused`) while every join frame (or
    close frame) is written, and resumed once all are in its sockets: its event
    loop then reads them all in one turn, and asyncio runs the timers that are
    due (the tick the first join arms) only after a turn's I/O callbacks.

    Args:
        daemon: the test's daemon.
        names: one client per name.
    """

    def __init__(self, daemon: Daemon, names: Sequence[str]) -> None:
        self.daemon = daemon
        self.names = list(names)
        self.sockets: list[AsyncConnection] = []
        self.welcomes: list[dict[str, Any]] = []
        # The sync Playwright driver keeps the test's thread: the clients get their own.
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(3 * TIMEOUT)

    def join(self) -> None:
        """Connect everyone, then send every join frame in one go; wait for the welcomes."""
        self._run(self._join())

    def leave(self) -> None:
        """Send every close frame in one go and wait until the connections are closed."""
        self._run(self._leave())

    async def _join(self) -> None:
        url = self.daemon.ws_url
        self.sockets = list(
            await asyncio.gather(
                *(
                    async_connect(url, subprotocols=[SUBPROTOCOL], open_timeout=TIMEOUT)
                    for _ in self.names
                )
            )
        )
        frames = [json.dumps({"type": "join", "name": name, "avatar": ""}) for name in self.names]
        with paused(self.daemon):
            # send() writes to the socket before it returns (nothing is buffered yet).
            await asyncio.gather(*(ws.send(f) for ws, f in zip(self.sockets, frames, strict=True)))
        self.welcomes = list(await asyncio.gather(*(_welcome(ws) for ws in self.sockets)))

    async def _leave(self) -> None:
        with paused(self.daemon):
            closing = [asyncio.create_task(ws.close()) for ws in self.sockets]
            # A connection is CLOSING once close() wrote its close frame.
            while not all(ws.state is State.CLOSING for ws in self.sockets):
                await asyncio.sleep(0)
        await asyncio.wait_for(asyncio.gather(*closing), TIMEOUT)

    def close(self) -> None:
        """Close what is still open and stop the clients' thread."""
        self._run(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(TIMEOUT)
        self._loop.close()

    async def _close(self) -> None:
        await asyncio.gather(*(ws.close() for ws in self.sockets))

    def __enter__(self) -> Crowd:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


async def _welcome(ws: AsyncConnection) -> dict[str, Any]:
    """The welcome, once the frames before it are read (an error frame raises Refused)."""
    while True:
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        if frame["type"] == "error":
            raise Refused(frame)
        if frame["type"] == "welcome":
            return frame
