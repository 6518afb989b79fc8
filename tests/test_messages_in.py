"""Messages in: delivered from the connection's data_received (outbox.Connection.listen).

pichat reads messages without websockets' queue and ``recv()``; these check what
``recv()`` did for it: fragments joined, invalid UTF-8 refused with 1007, and
frames that arrive with the handshake itself kept for the handler, in order.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from tests.conftest import join, open_client, recv, recv_type, say
from tests.daemon import TIMEOUT
from tests.harness import Running as Daemon


def masked(payload: bytes, opcode: int = 0x1) -> bytes:
    """One final client frame (masked, as a client must send it)."""
    mask = os.urandom(4)
    head = bytes([0x80 | opcode])
    if len(payload) < 126:
        head += bytes([0x80 | len(payload)])
    else:
        head += bytes([0x80 | 126]) + struct.pack("!H", len(payload))
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def test_fragmented_message_is_joined(daemon: Daemon) -> None:
    """A say sent in fragments arrives as one message."""
    ws, _ = await join(daemon, "alice")
    text = json.dumps({"type": "say", "text": "in three parts"})
    await ws.send([text[:5], text[5:12], text[12:]])
    assert (await recv_type(ws, "message"))["text"] == "in three parts"
    await ws.close()


async def test_fragments_over_the_limit_close_with_1009(daemon_factory: Any) -> None:
    """Fragments count together against max_frame_bytes."""
    daemon = await daemon_factory({"max_frame_bytes": 2048})
    ws, _ = await join(daemon, "alice")
    text = json.dumps({"type": "say", "text": "x" * 3000})
    await ws.send([text[:1500], text[1500:]])
    with pytest.raises(ConnectionClosed):
        await recv(ws)
    assert ws.close_code == 1009


async def test_invalid_utf8_closes_with_1007(daemon: Daemon) -> None:
    """A text frame that is not UTF-8 closes the connection with 1007; others stay."""
    other, _ = await join(daemon, "bob")
    ws, _ = await join(daemon, "alice")
    await ws.send(b'{"type": "say", "text": "\xff\xfe"}', text=True)
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert ws.close_code == 1007
    await say(other, "still here")
    assert (await recv_type(other, "message"))["text"] == "still here"
    await other.close()


async def test_join_in_the_handshake_packet_is_answered(daemon: Daemon) -> None:
    """Frames sent right behind the upgrade request (one write) are read, in order."""
    reader, writer = await asyncio.open_connection("127.0.0.1", daemon.port)
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Protocol: pichat.v1\r\n\r\n"
    ).encode()
    join_frame = masked(json.dumps({"type": "join", "name": "early"}).encode())
    say_frame = masked(json.dumps({"type": "say", "text": "right away"}).encode())
    writer.write(request + join_frame + say_frame)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    assert head.startswith(b"HTTP/1.1 101")
    kinds = []
    while "message" not in kinds:
        first = await asyncio.wait_for(reader.readexactly(2), TIMEOUT)
        size = first[1] & 0x7F
        if size == 126:
            size = struct.unpack("!H", await reader.readexactly(2))[0]
        elif size == 127:
            size = struct.unpack("!Q", await reader.readexactly(8))[0]
        frame = json.loads(await asyncio.wait_for(reader.readexactly(size), TIMEOUT))
        kinds.append(frame["type"])
        if frame["type"] == "message":
            assert frame["text"] == "right away" and frame["name"] == "early"
    assert kinds.index("welcome") < kinds.index("message")
    writer.close()


async def test_pings_are_still_answered(daemon: Daemon) -> None:
    """Control frames keep going through websockets: a ping gets its pong."""
    ws = await open_client(daemon)
    pong = await ws.ping(b"x")
    await asyncio.wait_for(pong, TIMEOUT)
    await ws.close()


def test_shared_empty_headers_cannot_be_filled() -> None:
    """The one empty Headers every open connection shares refuses every change."""
    from pichat.server import NO_HEADERS

    for change in (
        lambda: NO_HEADERS.__setitem__("X", "1"),
        lambda: NO_HEADERS.update({"X": "1"}),
        lambda: NO_HEADERS.set_insecure("X", "1"),
        NO_HEADERS.clear,
    ):
        with pytest.raises(TypeError):
            change()
    assert len(NO_HEADERS) == 0 and NO_HEADERS.get("Host") is None


async def test_open_connections_drop_their_handshake_headers(daemon: Daemon) -> None:
    """Once open, a connection keeps no handshake headers (and still works)."""
    ws, _ = await join(daemon, "alice")
    (client,) = daemon.server.outbox.clients
    assert client.connection.request is not None
    assert len(client.connection.request.headers) == 0
    await say(ws, "hello")
    assert (await recv_type(ws, "message"))["text"] == "hello"
    await ws.close()
