"""A minimal ``pichat.v1`` client for the browser tests: the "other people" in the room."""

from __future__ import annotations

import json
from contextlib import ExitStack
from typing import Any

from websockets.sync.client import ClientConnection, connect

from tests.daemon import TIMEOUT

SUBPROTOCOL = "pichat.v1"


class Refused(Exception):
    """The server answered with an ``error`` frame."""

    def __init__(self, frame: dict[str, Any]) -> None:
        self.frame = frame
        super().__init__(f"{frame.get('code')}: {frame.get('detail')}")


class ChatClient:
    """One joined connection; frames that are not awaited are kept in ``frames``.

    Args:
        url: the daemon's ``ws://`` URL.
        name: the name to join with.
        avatar: the avatar URL (may be empty).
        since: the resume cursor (``None`` for a fresh join).
        password: a moderator's password.
    """

    def __init__(
        self,
        url: str,
        name: str,
        avatar: str = "",
        since: int | None = None,
        password: str | None = None,
    ) -> None:
        self.frames: list[dict[str, Any]] = []
        # Entered as a context manager: websockets 17 warns about a bare connect().
        self._stack = ExitStack()
        self.ws: ClientConnection = self._stack.enter_context(
            connect(url, subprotocols=[SUBPROTOCOL], open_timeout=TIMEOUT, close_timeout=TIMEOUT)
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
