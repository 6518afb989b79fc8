"""Shared fixtures: a real daemon per test, and small WebSocket client helpers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.daemon import TIMEOUT, Daemon


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator[Any]:
    """Start daemons with a given config; all are stopped after the test."""
    started: list[Daemon] = []

    def start(config: dict[str, Any] | None = None, **kwargs: Any) -> Daemon:
        directory = tmp_path / f"d{len(started)}"
        directory.mkdir()
        daemon = Daemon(directory, config, **kwargs)
        daemon.start()
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        if daemon.process is not None and daemon.process.poll() is None:
            daemon.stop()


@pytest.fixture
def daemon(daemon_factory: Any) -> Daemon:
    """A daemon with the test defaults."""
    result: Daemon = daemon_factory()
    return result


async def recv(ws: ClientConnection, timeout: float = TIMEOUT) -> Any:
    """The next frame, decoded from JSON."""
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def recv_type(ws: ClientConnection, kind: str, timeout: float = TIMEOUT) -> Any:
    """The next frame of a type, skipping others (e.g. presence)."""
    while True:
        frame = await recv(ws, timeout)
        if frame.get("type") == kind:
            return frame


async def open_client(
    daemon: Daemon, subprotocol: str = "pichat.v1", host: str | None = None, **kwargs: Any
) -> ClientConnection:
    """A WebSocket client connected to the daemon; ``host`` sets the Host header."""
    url = daemon.ws_url
    if host is not None:
        # The URL gives the Host header; host/port say where to connect.
        url = f"ws://{host}:{daemon.port}/"
        kwargs.update(host="127.0.0.1", port=daemon.port)
    return await connect(url, subprotocols=[subprotocol], open_timeout=TIMEOUT, **kwargs)  # type: ignore[list-item]


async def join(
    daemon: Daemon, name: str, avatar: str = "", since: int | None = None, **kwargs: Any
) -> tuple[ClientConnection, Any]:
    """Connect and join; returns the connection and its welcome frame."""
    ws = await open_client(daemon, **kwargs)
    await ws.send(json.dumps({"type": "join", "name": name, "avatar": avatar, "since": since}))
    return ws, await recv_type(ws, "welcome")


async def say(ws: ClientConnection, text: str) -> None:
    """Send a say frame."""
    await ws.send(json.dumps({"type": "say", "text": text}))
