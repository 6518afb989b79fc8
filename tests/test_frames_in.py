"""The whole-text-frame path of Connection: what it reads itself, what it leaves to websockets.

A frame that is one whole masked text frame in one read is read without
websockets' parser; every other shape must still get websockets' answer. Each
test drives a real in-process daemon over a real socket and checks, through
``pichat.connection.whole_frames``, which path a frame took.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
from typing import Any

import pytest

import pichat.connection
from tests.conftest import join, recv_type
from tests.daemon import TIMEOUT
from tests.harness import Running as Daemon
from tests.test_messages_in import masked


def say_frame(text: str, **fields: Any) -> bytes:
    return masked(json.dumps({"type": "say", "text": text, **fields}).encode())


class Raw:
    """A WebSocket client on a bare socket: the test decides every byte it writes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def joined(cls, daemon: Daemon, name: str) -> Raw:
        reader, writer = await asyncio.open_connection("127.0.0.1", daemon.port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: pichat.v1\r\n\r\n"
            ).encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert head.startswith(b"HTTP/1.1 101")
        raw = cls(reader, writer)
        raw.writer.write(masked(json.dumps({"type": "join", "name": name}).encode()))
        assert (await raw.next_of("welcome"))["type"] == "welcome"
        return raw

    async def frame(self) -> tuple[int, bytes]:
        """The next frame the server sent: opcode and payload."""
        first = await asyncio.wait_for(self.reader.readexactly(2), TIMEOUT)
        size = first[1] & 0x7F
        if size == 126:
            size = struct.unpack("!H", await self.reader.readexactly(2))[0]
        elif size == 127:
            size = struct.unpack("!Q", await self.reader.readexactly(8))[0]
        return first[0] & 0x0F, await asyncio.wait_for(self.reader.readexactly(size), TIMEOUT)

    async def next_of(self, kind: str) -> Any:
        """The next JSON frame of a type (presence and others skipped)."""
        while True:
            opcode, payload = await self.frame()
            assert opcode == 0x1, (opcode, payload)
            frame = json.loads(payload)
            if frame["type"] == kind:
                return frame

    async def close_code(self) -> int:
        """The code of the close frame the server sends next (text frames skipped)."""
        while True:
            opcode, payload = await self.frame()
            if opcode == 0x8:
                return int(struct.unpack("!H", payload[:2])[0])

    def close(self) -> None:
        self.writer.close()


async def test_a_say_in_one_read_skips_the_parser(daemon: Daemon) -> None:
    """A client's join and say, each one frame in one write, are read by the fast path."""
    before = pichat.connection.whole_frames
    ws, _ = await join(daemon, "alice")
    await ws.send(json.dumps({"type": "say", "text": "hello"}))
    assert (await recv_type(ws, "message"))["text"] == "hello"
    assert pichat.connection.whole_frames - before == 2
    await ws.close()


async def test_the_16_bit_length_form_and_the_size_limit(daemon_factory: Any) -> None:
    """A frame of exactly max_frame_bytes is read; one byte more closes with 1009, as before."""
    daemon = await daemon_factory({"max_frame_bytes": 2048, "max_message_length": 3000})
    raw = await Raw.joined(daemon, "alice")
    padding = 2048 - len(json.dumps({"type": "say", "text": ""}).encode())
    before = pichat.connection.whole_frames
    raw.writer.write(say_frame("x" * padding))
    assert len((await raw.next_of("message"))["text"]) == padding
    assert pichat.connection.whole_frames - before == 1
    raw.writer.write(say_frame("x" * (padding + 1)))
    assert await raw.close_code() == 1009
    assert pichat.connection.whole_frames - before == 1
    raw.close()


async def test_two_frames_in_one_read_and_a_frame_in_two(daemon: Daemon) -> None:
    """Shapes the fast path leaves to websockets arrive whole and in order."""
    raw = await Raw.joined(daemon, "alice")
    before = pichat.connection.whole_frames
    raw.writer.write(say_frame("one") + say_frame("two"))
    assert (await raw.next_of("message"))["text"] == "one"
    assert (await raw.next_of("message"))["text"] == "two"
    frame = say_frame("three")
    raw.writer.write(frame[:9])
    await raw.writer.drain()
    await asyncio.sleep(0.05)  # two reads on the server's side
    raw.writer.write(frame[9:])
    assert (await raw.next_of("message"))["text"] == "three"
    raw.writer.write(say_frame("four"))  # the parser is between frames again
    assert (await raw.next_of("message"))["text"] == "four"
    assert pichat.connection.whole_frames - before == 1
    raw.close()


async def test_a_ping_and_a_say_in_one_read(daemon: Daemon) -> None:
    """A control frame in front goes to websockets with what follows: pong, then the message."""
    raw = await Raw.joined(daemon, "alice")
    mask = os.urandom(4)
    ping = bytes([0x89, 0x80 | 2]) + mask + bytes(b ^ mask[i] for i, b in enumerate(b"hi"))
    raw.writer.write(ping + say_frame("after the ping"))
    opcode, payload = await raw.frame()
    while opcode == 0x1:  # a presence frame may come first
        opcode, payload = await raw.frame()
    assert (opcode, payload) == (0xA, b"hi")
    assert (await raw.next_of("message"))["text"] == "after the ping"
    raw.close()


async def test_an_unmasked_frame_closes_with_1002(daemon: Daemon) -> None:
    """A client frame without a mask is a protocol error, whatever its shape."""
    raw = await Raw.joined(daemon, "alice")
    payload = json.dumps({"type": "say", "text": "bare"}).encode()
    raw.writer.write(bytes([0x81, len(payload)]) + payload)
    assert await raw.close_code() == 1002
    raw.close()


async def test_a_reserved_bit_closes_with_1002(daemon: Daemon) -> None:
    """RSV1 without a negotiated extension is a protocol error."""
    raw = await Raw.joined(daemon, "alice")
    frame = bytearray(say_frame("compressed?"))
    frame[0] |= 0x40
    raw.writer.write(bytes(frame))
    assert await raw.close_code() == 1002
    raw.close()


async def test_invalid_utf8_in_one_read_closes_with_1007(daemon: Daemon) -> None:
    """Bytes that are not UTF-8 are not delivered by the fast path: websockets' 1007 stands."""
    raw = await Raw.joined(daemon, "alice")
    before = pichat.connection.whole_frames
    raw.writer.write(masked(b'{"type": "say", "text": "\xff"}'))
    assert await raw.close_code() == 1007
    assert pichat.connection.whole_frames == before
    raw.close()


async def test_the_frames_of_one_read_are_not_committed_one_by_one(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four says in one write: one commit for the first at most, one for the rest.

    Each went in a commit and a write to every member of its own: at
    saturation the room of 1000 fell from 2.4 to 0.3 million deliveries a
    second (the burst rule of ``Store.append``).
    """
    alice = await Raw.joined(daemon, "alice")
    bob = await Raw.joined(daemon, "bob")
    chat = daemon.server.chat
    sizes: list[int] = []
    committed = chat.committed

    def watching(batch: Any) -> None:
        sizes.append(len(batch))
        committed(batch)

    monkeypatch.setattr(chat, "committed", watching)
    alice.writer.write(b"".join(say_frame(f"m{n}") for n in range(4)))
    texts = [(await bob.next_of("message"))["text"] for _ in range(4)]
    assert texts == ["m0", "m1", "m2", "m3"]
    assert sum(sizes) == 4 and len(sizes) <= 2, sizes
    alice.close()
    bob.close()
