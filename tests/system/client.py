"""A small pichat.v1 client for system tests: join, say, and resume after a restart.

Needs the ``websockets`` package (the test venv), unlike the rest of
:mod:`tests.system`, so it is imported on its own: ``from tests.system.client import
Chat``.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from .container import TIMEOUT

__all__ = ["Chat", "get_json", "round_trip"]

SUBPROTOCOL = "pichat.v1"
# Bounds one opening handshake; a server mid-restart may accept and never answer.
OPEN_TIMEOUT = TIMEOUT / 10


def get_json(port: int, path: str, host: str = "127.0.0.1") -> Any:
    """``GET http://host:port/path`` and decode the JSON body (raises on non-2xx)."""
    with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=TIMEOUT) as response:
        return json.load(response)


class Chat:
    """One chat participant that keeps every message it saw, in order.

    :meth:`connect` joins (or resumes with ``since`` = the last id seen);
    :meth:`reconnect` retries until the server is back, as the browser client does.
    """

    def __init__(self, port: int, name: str, host: str = "127.0.0.1") -> None:
        self.url = f"ws://{host}:{port}/"
        self.name = name
        self.messages: list[dict[str, Any]] = []
        self.welcomes: list[dict[str, Any]] = []
        self.ws: ClientConnection | None = None

    @property
    def last_id(self) -> int | None:
        """The id of the last message seen, ``None`` before any."""
        return self.messages[-1]["id"] if self.messages else None

    async def connect(self, since: int | None = None) -> dict[str, Any]:
        """Open a connection and join; returns the welcome (its history recorded).

        Args:
            since: resume after this message id; by default the last one seen, if
                this client joined before, else a fresh join.
        """
        self.ws = await connect(self.url, subprotocols=[SUBPROTOCOL], open_timeout=OPEN_TIMEOUT)
        if since is None and self.welcomes:
            since = self.last_id
        await self.ws.send(json.dumps({"type": "join", "name": self.name, "since": since}))
        welcome = await self.expect("welcome")
        self.welcomes.append(welcome)
        self.messages.extend(welcome["history"])
        return welcome

    async def reconnect(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        """:meth:`connect` until it works (the server may be restarting)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        delay = 0.05
        while True:
            try:
                return await self.connect()
            except (OSError, ConnectionClosed, InvalidHandshake, TimeoutError):
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)

    async def expect(self, kind: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The next frame of type ``kind``; ``message`` frames on the way are recorded."""
        assert self.ws is not None, "not connected"
        async with asyncio.timeout(timeout):
            while True:
                frame: dict[str, Any] = json.loads(await self.ws.recv())
                if frame["type"] == "message" and kind != "message":
                    self.messages.append(frame)
                if frame["type"] == kind:
                    if kind == "message":
                        self.messages.append(frame)
                    return frame
                if frame["type"] == "error":
                    raise AssertionError(f"server error while waiting for {kind}: {frame}")

    async def say(self, text: str) -> dict[str, Any]:
        """Send ``text`` and return the server's broadcast of it (the stored message)."""
        assert self.ws is not None, "not connected"
        await self.ws.send(json.dumps({"type": "say", "text": text}))
        while True:
            message = await self.expect("message")
            if message["name"] == self.welcomes[-1]["you"]["name"] and message["text"] == text:
                return message

    async def close(self) -> None:
        """Close the connection, if open."""
        if self.ws is not None:
            await self.ws.close()
            self.ws = None


async def round_trip(port: int, host: str = "127.0.0.1") -> tuple[dict[str, Any], dict[str, Any]]:
    """Two clients join; one says something; both receive it.

    Returns:
        ``(welcome, message)`` of the sender: the welcome carries the site's title.
    """
    alice, bob = Chat(port, "alice", host), Chat(port, "bob", host)
    welcome = await alice.connect()
    await bob.connect()
    try:
        sent = await alice.say("hello from the round trip")
        heard = await bob.expect("message")
        assert heard == sent, (heard, sent)
        return welcome, sent
    finally:
        await alice.close()
        await bob.close()
