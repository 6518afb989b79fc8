"""The read side of a client connection: websockets' protocol, pichat's delivery.

:class:`Connection` is websockets' server connection with what pichat needs
below the handshake (see its docstring). Messages reach the engine straight
from ``data_received``; the common frame (one whole, masked, unfragmented text
frame in one read, while the parser waits for a frame) is read here without
websockets' parser (:meth:`Connection._whole_text_frame`), every other byte
goes through it.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
from collections.abc import Callable
from typing import Any, cast

from websockets.asyncio.messages import Assembler
from websockets.asyncio.server import ServerConnection
from websockets.frames import CloseCode, Opcode
from websockets.frames import Frame as WireFrame
from websockets.protocol import Event, Protocol, State
from websockets.streams import StreamReader

from .web import RequestHead

try:
    from websockets.speedups import apply_mask
except ImportError:  # websockets built without its C extension
    from websockets.utils import apply_mask

__all__ = ["SLOW_CLIENT_GRACE", "Connection"]

logger = logging.getLogger(__name__)

#: How long a client dropped for being too slow gets to read its close frame.
SLOW_CLIENT_GRACE = 2.0
DATA_OPCODES = (Opcode.TEXT, Opcode.BINARY, Opcode.CONT)
#: What websockets' parser waits in between frames (the innermost generator).
_AT_EOF = StreamReader.at_eof.__code__
#: Messages read by :meth:`Connection._whole_text_frame` since start (for tests).
whole_frames = 0


def size_limit_name(protocol: Protocol) -> str:
    """The protocol's attribute for its message size limit.

    websockets 15 (Debian 13's) calls it ``max_size``, later versions
    ``max_message_size``; a reload sets it and the whole-frame path reads it.
    """
    return "max_message_size" if hasattr(protocol, "max_message_size") else "max_size"


def _size_limit(protocol: Protocol) -> float:
    limit = getattr(protocol, size_limit_name(protocol), None)
    return math.inf if limit is None else limit


class _NoMessages:
    """Stands in for websockets' message queue (an ``Assembler``, 1 KiB a connection).

    pichat takes every message in :meth:`Connection.process_event`, so nothing is
    ever put here; ``recv()`` on a pichat connection is a programming error.
    """

    __slots__ = ()

    def put(self, frame: object) -> None:
        raise RuntimeError("pichat connections deliver messages through Connection.listen")

    async def get(self, decode: bool | None = None) -> str | bytes:
        raise RuntimeError("pichat connections deliver messages through Connection.listen")

    def close(self) -> None:
        """Called by websockets when the connection is lost: nothing to release."""


NO_MESSAGES = _NoMessages()


class Connection(ServerConnection):
    """websockets' server connection, plus what pichat needs below the handshake.

    - The request head is watched before the library parses it
      (:class:`~.web.RequestHead`): bounded in size, methods other than GET
      recorded and rewritten so that they can be answered (HEAD, 405).
    - Pongs are noticed without websockets' own ping bookkeeping, so a ping is
      a frame written now, never an ``await``.
    - ``on_lost`` runs exactly once when the TCP connection ends, on every path
      (an abandoned handshake too): admission is released there.
    - Messages go to ``on_message`` straight from ``data_received`` (:meth:`listen`),
      not through websockets' message queue to a ``recv()`` in the handler: the
      queue, the handler task's wake-up and its ``async for`` chain cost about
      1 KiB a connection and a loop turn per message. Fragments are joined here
      (websockets' protocol bounds their total by the frame size limit), text is
      decoded strictly (invalid UTF-8 closes with 1007, as ``recv()`` would).
    """

    # Slots, not instance attributes: past 30 keys CPython stops sharing the
    # keys of instance dicts, and every connection would carry a 1.5 KiB dict.
    __slots__ = (
        "head",
        "method",
        "awaiting_pong",
        "on_lost",
        "on_message",
        "_parts",
        "_early",
        "ended",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.head: RequestHead | None = RequestHead()
        self.method = "GET"
        self.awaiting_pong = False
        self.on_lost: Callable[[Connection], None] | None = None
        self.on_message: Callable[[str | bytes], None] | None = None
        #: The fragments of a message being received, its first opcode first.
        self._parts: list[Any] | None = None
        #: Messages that came before :meth:`listen` (reading is paused meanwhile).
        self._early: list[str | bytes] | None = None
        #: Done when the TCP connection is lost: what the handler waits for (one
        #: future; ``wait_closed()`` shields, which costs two closures a connection).
        self.ended: asyncio.Future[None] = self.loop.create_future()
        # websockets keeps its drain waiters in a deque, and an empty deque is
        # 0.75 KiB; a list does the same here (append, remove, iterate), empty in 56 bytes.
        self.drain_waiters = cast("collections.deque[asyncio.Future[None]]", [])

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """As websockets, but without its message queue: :meth:`listen` replaces it."""
        super().connection_made(transport)
        self.recv_messages = cast(Assembler, NO_MESSAGES)

    def listen(self, on_message: Callable[[str | bytes], None]) -> None:
        """Deliver every message to ``on_message`` from now on, the early ones first."""
        self.on_message = on_message
        early, self._early = self._early, None
        if early is not None:
            for message in early:
                self._deliver(message)
            self.transport.resume_reading()

    def process_event(self, event: Event) -> None:
        """Data frames to :meth:`_deliver`; the request and control frames as before."""
        if not isinstance(event, WireFrame) or event.opcode not in DATA_OPCODES:
            super().process_event(event)
            return
        parts = self._parts
        if event.opcode is Opcode.CONT:
            if parts is None:
                return  # after a failure: the protocol checks the sequence itself
            parts.append(event.data)
            if not event.fin:
                return
            self._parts = None
            text = parts[0] is Opcode.TEXT
            data: Any = b"".join(parts[1:])
        elif not event.fin:
            self._parts = [event.opcode, event.data]
            return
        else:
            text = event.opcode is Opcode.TEXT
            data = event.data
        if not text:
            self._deliver(bytes(data))
            return
        try:
            message = str(data, "utf-8")
        except UnicodeDecodeError as exc:
            self._fail(CloseCode.INVALID_DATA, f"{exc.reason} at position {exc.start}")
            return
        self._deliver(message)

    def _deliver(self, message: str | bytes) -> None:
        on_message = self.on_message
        if on_message is None:
            # The handler has not started yet: keep the message for it, read no more.
            if self._early is None:
                self._early = []
                self.transport.pause_reading()
            self._early.append(message)
            return
        if self.protocol.state is State.CLOSED:
            return
        try:
            on_message(message)
        except Exception:
            self.logger.error("message handler failed", exc_info=True)
            self._fail(CloseCode.INTERNAL_ERROR, "")

    def _fail(self, code: int, reason: str) -> None:
        """Close with ``code``; the transport is aborted if the client does not follow."""
        self._parts = None
        if self.protocol.state is not State.OPEN:
            return
        self.protocol.fail(code, reason)
        try:
            self.send_data()
        except Exception:
            logger.debug("close frame not sent", exc_info=True)
        self.loop.call_later(SLOW_CLIENT_GRACE, self.transport.abort)

    def data_received(self, data: bytes) -> None:
        """Pass the request head through :class:`RequestHead` first."""
        head = self.head
        if head is not None:
            if head.refusal is not None:
                return  # refused: what the client still sends is read and dropped
            data = head.feed(data)
            if head.refusal is not None:
                # Answer, then half-close: closing with unread data would send
                # an RST that destroys the answer. The handshake's open_timeout
                # ends a client that goes on sending.
                self.transport.write(head.refusal)
                if self.transport.can_write_eof():
                    self.transport.write_eof()
                else:
                    self.transport.close()
                return
            if head.done:
                self.method = head.method
                self.head = None
            if not data:
                return
        if not self._whole_text_frame(data):
            super().data_received(data)

    def _whole_text_frame(self, data: bytes) -> bool:
        """Deliver ``data`` if it is exactly one whole text frame; False to parse it as usual.

        Nearly every frame a chat client sends is one short text message that
        arrives in one read. websockets' parser takes it through its stream
        reader, a generator per field, a ``Frame`` and the events list, which at
        one message every few milliseconds (cold caches) was 0.07 ms of the
        0.6 ms a message spends in the server; this reads the header, unmasks
        and decodes in a few steps. It only takes what the parser would accept
        the same way and leave in the same state: the connection open and
        listening, the parser waiting for a new frame with nothing buffered, no
        fragmented message in progress, no extension, no debug logging; FIN set,
        no reserved bit, the text opcode, masked, within the size limit, valid
        UTF-8. Anything else (a control frame, two frames in one read, a frame
        split across reads, a bad byte) goes to websockets, which gives it the
        usual answer, 1002, 1007 or 1009 included.
        """
        size = len(data)
        if size < 6 or data[0] != 0x81:
            return False
        length = data[1] ^ 0x80  # the mask bit must be set: then this is the length
        start = 2
        if length == 126:
            length = int.from_bytes(data[2:4])
            start = 4
        elif length > 126:  # unmasked, or a 64-bit length: not this path
            return False
        if start + 4 + length != size or self.on_message is None or self._parts is not None:
            return False
        protocol = self.protocol
        if (
            protocol.state is not State.OPEN
            or protocol.reader.buffer
            or protocol.extensions
            or protocol.debug
            or length > _size_limit(protocol)
        ):
            return False
        waiting: Any = protocol.parser  # a generator: gi_yieldfrom, gi_code
        while waiting.gi_yieldfrom is not None:
            waiting = waiting.gi_yieldfrom
        if waiting.gi_code is not _AT_EOF:
            return False  # the parser is inside a frame
        try:
            text = str(apply_mask(data[start + 4 :], data[start : start + 4]), "utf-8")
        except UnicodeDecodeError:
            return False
        global whole_frames  # a counter for the tests
        whole_frames += 1
        self._deliver(text)
        return True

    def acknowledge_pings(self, data: bytes) -> None:
        """A pong: the client is alive."""
        self.awaiting_pong = False
        super().acknowledge_pings(data)

    def connection_lost(self, exc: Exception | None) -> None:
        """The end of the connection, whatever happened before."""
        try:
            super().connection_lost(exc)
        finally:
            if not self.ended.done():
                self.ended.set_result(None)
            on_lost, self.on_lost = self.on_lost, None
            if on_lost is not None:
                on_lost(self)
