"""A lean WebSocket client on a raw asyncio Protocol, for generating load.

One Python process on one core cannot push 200,000 frames per second through
websockets' client objects (each frame becomes an event, a queue entry, an await),
so the load generator would measure itself instead of the server. This client does
the HTTP upgrade itself, sends masked frames, and by default only *counts* what it
receives: it walks the 2-10 byte frame headers of each chunk the kernel hands over
and skips the payloads, so a burst of frames costs one ``data_received`` call and a
few integer operations per frame. It parses payloads only when a phase asks for them
(the welcome, latency timestamps) and answers pings and closes, as a client must.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import socket
import struct
import time
from collections.abc import Callable

try:  # the C version when the wheel has it: masking is per byte
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover
    from websockets.utils import apply_mask

__all__ = ["BenchClient", "Counters", "HandshakeError", "open_client"]

SUBPROTOCOL = "pichat.v1"
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: Linux: pick the source port at connect time, per destination, not at bind time.
#: Without it, binding many sockets to one source address runs out of ports early.
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)

OP_TEXT = 0x1
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA


class HandshakeError(Exception):
    """The server refused the WebSocket upgrade (e.g. 503 over its connection limits)."""


class Counters:
    """Totals over every client of the generator; phases read them before and after."""

    __slots__ = ("texts", "bytes", "pings", "closes")

    def __init__(self) -> None:
        self.texts = 0
        self.bytes = 0
        self.pings = 0
        self.closes = 0


def frame_header(opcode: int, length: int, mask: bytes) -> bytes:
    """A client frame header (FIN set, MASK set) for a payload of ``length`` bytes."""
    if length < 126:
        return struct.pack("!BB", 0x80 | opcode, 0x80 | length) + mask
    if length < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length) + mask
    return struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length) + mask


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A complete masked client frame (RFC 6455 §5.3: every client frame is masked)."""
    mask = os.urandom(4)
    return frame_header(opcode, len(payload), mask) + apply_mask(payload, mask)


class BenchClient(asyncio.Protocol):
    """One connection: upgrade, join, then count (or parse) what arrives.

    Args:
        counters: the generator-wide totals to add to.
        host_header: the ``Host`` header value.
    """

    def __init__(self, counters: Counters, host_header: str) -> None:
        self.counters = counters
        self.host_header = host_header
        self.transport: asyncio.Transport | None = None
        self.key = base64.b64encode(os.urandom(16))
        loop = asyncio.get_running_loop()
        self.upgraded: asyncio.Future[None] = loop.create_future()
        self.welcomed: asyncio.Future[bytes] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()
        self.handshaking = True
        #: Bytes kept between chunks: the handshake, a partial header, or a
        #: partial frame whose payload is wanted.
        self.buffer = b""
        #: Payload bytes of an already counted frame still to skip.
        self.skip = 0
        #: Text frames received on this connection.
        self.texts = 0
        #: Called with each text payload and the receive time, when set.
        self.on_text: Callable[[BenchClient, bytes, int], None] | None = None
        #: Called after each chunk that held text frames (the senders' flow control).
        self.on_count: Callable[[BenchClient], None] | None = None
        self.closed_by_server = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Send the upgrade request at once."""
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        request = (
            f"GET / HTTP/1.1\r\nHost: {self.host_header}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {self.key.decode()}\r\n"
            f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {SUBPROTOCOL}\r\n\r\n"
        )
        transport.write(request.encode())

    def connection_lost(self, exc: Exception | None) -> None:
        """Fail whatever is still awaited."""
        for future in (self.upgraded, self.welcomed):
            if not future.done():
                future.set_exception(ConnectionError("connection lost"))
                future.exception()  # whoever awaits it sees it; nobody else must
        if not self.lost.done():
            self.lost.set_result(None)

    def data_received(self, data: bytes) -> None:
        """Skip what is left of a counted frame, then walk the frames of the chunk."""
        if self.handshaking:
            data = self._handshake(data)
            if not data:
                return
        skip = self.skip
        if skip:
            if skip >= len(data):
                self.skip = skip - len(data)
                self.counters.bytes += len(data)
                return
            self.counters.bytes += skip
            data = data[skip:]
            self.skip = 0
        if self.buffer:
            data = self.buffer + data
            self.buffer = b""
        self._frames(data)

    # Internals

    def _handshake(self, data: bytes) -> bytes:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return b""
        head, rest = self.buffer[:end], self.buffer[end + 4 :]
        self.buffer = b""
        self.handshaking = False
        lines = head.split(b"\r\n")
        if not lines[0].startswith(b"HTTP/1.1 101"):
            self.upgraded.set_exception(HandshakeError(lines[0].decode(errors="replace")))
            assert self.transport is not None
            self.transport.abort()
            return b""
        accept = base64.b64encode(hashlib.sha1(self.key + GUID).digest())
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(b":") for line in lines[1:])
        }
        if headers.get(b"sec-websocket-accept") != accept:
            self.upgraded.set_exception(HandshakeError("bad Sec-WebSocket-Accept"))
        elif headers.get(b"sec-websocket-protocol") != SUBPROTOCOL.encode():
            self.upgraded.set_exception(HandshakeError("subprotocol not accepted"))
        else:
            self.upgraded.set_result(None)
        return rest

    def _frames(self, data: bytes) -> None:
        # The hot loop of the whole generator: keep it to integer arithmetic.
        size = len(data)
        pos = 0
        texts = 0
        on_text = self.on_text
        want_payload = on_text is not None or not self.welcomed.done()
        now = 0
        while pos < size:
            if size - pos < 2:
                break
            first = data[pos]
            length = data[pos + 1] & 0x7F
            if length < 126:
                start = pos + 2
            elif length == 126:
                if size - pos < 4:
                    break
                length = (data[pos + 2] << 8) | data[pos + 3]
                start = pos + 4
            else:
                if size - pos < 10:
                    break
                length = int.from_bytes(data[pos + 2 : pos + 10], "big")
                start = pos + 10
            end = start + length
            opcode = first & 0x0F
            if opcode == OP_TEXT and not want_payload:
                texts += 1
                if end > size:
                    self.skip = end - size
                    pos = size
                    break
                pos = end
                continue
            if end > size:
                break  # a frame whose payload we need: wait for the rest
            payload = data[start:end]
            pos = end
            if opcode == OP_TEXT:
                texts += 1
                if not self.welcomed.done():
                    if b'"welcome"' in payload[:40]:
                        self.welcomed.set_result(payload)
                        want_payload = on_text is not None
                    continue
                if on_text is not None:
                    if not now:
                        now = time.monotonic_ns()
                    on_text(self, payload, now)
            else:
                self._control(opcode, payload)
        if pos < size:
            self.buffer = data[pos:]
        self.counters.bytes += pos
        if texts:
            self.texts += texts
            self.counters.texts += texts
            if self.on_count is not None:
                self.on_count(self)

    def _control(self, opcode: int, payload: bytes) -> None:
        assert self.transport is not None
        if opcode == OP_PING:
            self.counters.pings += 1
            self.transport.write(client_frame(OP_PONG, payload))
        elif opcode == OP_CLOSE:
            # Echo the close code: the server then closes the TCP connection.
            self.counters.closes += 1
            self.closed_by_server = True
            if not self.transport.is_closing():
                self.transport.write(client_frame(OP_CLOSE, payload[:2]))

    # Sending

    def send_text(self, payload: bytes) -> None:
        """Send one masked text frame."""
        assert self.transport is not None
        if not self.transport.is_closing():
            self.transport.write(client_frame(OP_TEXT, payload))

    def send_json(self, value: object) -> None:
        """Send one JSON text frame."""
        self.send_text(json.dumps(value, separators=(",", ":")).encode())

    def close(self) -> None:
        """Close cleanly: a close frame (1000), then the TCP connection once it is sent."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(client_frame(OP_CLOSE, struct.pack("!H", 1000)))
            self.transport.close()

    def abort(self) -> None:
        """Drop the connection at once (no closing handshake)."""
        if self.transport is not None:
            self.transport.abort()


async def open_client(
    counters: Counters,
    host: str,
    port: int,
    source: str,
    name: str,
    timeout: float = 60.0,
) -> BenchClient:
    """Connect from ``source``, upgrade, join as ``name`` and wait for the welcome.

    Raises:
        HandshakeError: the server refused the upgrade.
        OSError, TimeoutError: the connection failed.
    """
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((source, 0))
        sock.setblocking(False)
        async with asyncio.timeout(timeout):
            await loop.sock_connect(sock, (host, port))
            _, client = await loop.create_connection(
                lambda: BenchClient(counters, f"{host}:{port}"), sock=sock
            )
            try:
                await client.upgraded
                client.send_json({"type": "join", "name": name, "avatar": ""})
                await client.welcomed
            except BaseException:
                client.abort()
                raise
    except BaseException:
        sock.close()
        raise
    return client
