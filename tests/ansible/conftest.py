"""Fixtures and chat helpers for the Ansible role's tests."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from tests.system import TIMEOUT, build_deb
from tests.system.roots import REPO

ARTIFACTS = REPO / "tests" / "artifacts"


@pytest.fixture(scope="session")
def deb() -> Path:
    """The pichat .deb built from the working tree (cached by its sources)."""
    return build_deb()


def record_timing(name: str, seconds: float) -> None:
    """Keep how long a provisioning run took, for the closing note of the issue."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / "ansible-timing.json"
    timings = json.loads(path.read_text()) if path.exists() else {}
    timings[name] = round(seconds, 1)
    path.write_text(json.dumps(timings, indent=2, sort_keys=True) + "\n")


def http_get(url: str, host: str | None = None) -> tuple[int, Any]:
    """GET ``url`` directly (no proxy from the environment); the status and JSON body."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    with opener.open(request, timeout=TIMEOUT) as response:
        return response.status, json.loads(response.read())


async def recv_type(ws: ClientConnection, kind: str) -> Any:
    """The next frame of type ``kind``, skipping others (presence, ...)."""
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        if frame.get("type") == kind:
            return frame


async def join(port: int, name: str) -> tuple[ClientConnection, Any]:
    """Open a ``pichat.v1`` connection to pichat on the loopback port and join."""
    ws = await connect(
        f"ws://127.0.0.1:{port}/",
        subprotocols=[Subprotocol("pichat.v1")],
        open_timeout=TIMEOUT,
    )
    await ws.send(json.dumps({"type": "join", "name": name}))
    return ws, await recv_type(ws, "welcome")


async def say_and_hear(ws: ClientConnection, text: str) -> Any:
    """Send ``text`` and return the ``message`` frame the room broadcasts back."""
    await ws.send(json.dumps({"type": "say", "text": text}))
    while True:
        frame = await recv_type(ws, "message")
        if frame["text"] == text:
            return frame


async def upgrade_status(port: int, host: str) -> int:
    """The HTTP status of a WebSocket upgrade to the loopback port sent with ``Host: host``.

    101 when pichat admits the upgrade, else the status it refused it with (421 for a
    Host no site names). The connection always goes to 127.0.0.1: only the header
    changes, as it does when a rebinding page makes the browser connect.
    """
    try:
        ws = await connect(
            f"ws://{host}:{port}/",
            host="127.0.0.1",
            port=port,
            subprotocols=[Subprotocol("pichat.v1")],
            open_timeout=TIMEOUT,
        )
    except InvalidStatus as exc:
        return exc.response.status_code
    async with ws:
        assert ws.response is not None
        return ws.response.status_code
