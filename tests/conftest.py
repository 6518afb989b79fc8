"""Shared fixtures: a real daemon per test, and the async chat client helpers.

``daemon`` / ``daemon_factory``: the daemon in the test's own event loop
(:mod:`tests.harness`), the default. ``process`` / ``process_factory``: the
daemon as a subprocess (:mod:`tests.daemon`), for tests about the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.daemon import TIMEOUT, Daemon, Endpoint
from tests.harness import Running, running


@pytest.fixture
async def daemon_factory(tmp_path: Path) -> AsyncIterator[Any]:
    """Start in-process daemons with a given config (``await factory({...})``)."""
    async with contextlib.AsyncExitStack() as stack:
        count = 0

        async def start(config: dict[str, Any] | None = None) -> Running:
            nonlocal count
            directory = tmp_path / f"s{count}"
            count += 1
            directory.mkdir()
            return await stack.enter_async_context(running(directory, config))

        yield start


@pytest.fixture
async def daemon(daemon_factory: Any) -> Running:
    """An in-process daemon with the test defaults."""
    result: Running = await daemon_factory()
    return result


@pytest.fixture
def process_factory(tmp_path: Path) -> Iterator[Any]:
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
def process(process_factory: Any) -> Daemon:
    """A daemon subprocess with the test defaults."""
    result: Daemon = process_factory()
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


async def recv_presence(
    ws: ClientConnection, joined: str | None = None, left: str | None = None
) -> Any:
    """The first presence frame that tells ``joined`` joined (or ``left`` left).

    Presence is coalesced per tick, so the frame may carry others too, and
    earlier frames (a member's own join) are skipped.
    """
    while True:
        frame = await recv_type(ws, "presence")
        if joined is not None and joined in [p["name"] for p in frame["joined"]]:
            return frame
        if left is not None and left in frame["left"]:
            return frame


async def open_client(
    daemon: Daemon | Running | Endpoint,
    subprotocol: str = "pichat.v1",
    host: str | None = None,
    **kwargs: Any,
) -> ClientConnection:
    """A WebSocket client connected to the daemon; ``host`` sets the Host header."""
    url = daemon.ws_url
    if host is not None:
        # The URL gives the Host header; host/port say where to connect.
        url = f"ws://{host}:{daemon.port}/"
        kwargs.update(host="127.0.0.1", port=daemon.port)
    return await connect(url, subprotocols=[subprotocol], open_timeout=TIMEOUT, **kwargs)  # type: ignore[list-item]


async def join(
    daemon: Daemon | Running | Endpoint,
    name: str,
    avatar: str = "",
    since: int | None = None,
    epoch: str | None = None,
    **kwargs: Any,
) -> tuple[ClientConnection, Any]:
    """Connect and join (resuming after ``since`` in ``epoch``); returns it and its welcome."""
    ws = await open_client(daemon, **kwargs)
    frame = {"type": "join", "name": name, "avatar": avatar, "since": since}
    if epoch is not None:
        frame["epoch"] = epoch
    await ws.send(json.dumps(frame))
    return ws, await recv_type(ws, "welcome")


async def say(ws: ClientConnection, text: str) -> None:
    """Send a say frame."""
    await ws.send(json.dumps({"type": "say", "text": text}))
