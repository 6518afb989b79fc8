"""Frames out to clients: the connection record, queueing, slow readers, keepalive.

This is the only module that writes to a transport. Two choices shape it:

- Everything sent to a client is an already-encoded :data:`~.protocol.Frame`,
  queued and written with one ``transport.write`` per client per event-loop
  turn. A message is encoded once for all clients, and a burst of messages
  costs one system call per client, not one per message. What is queued counts
  against ``send_queue_bytes`` as soon as it is queued (a queue past it goes to
  the transport at once), and a client whose unread backlog passes it is
  dropped, so memory per client stays bounded and nobody waits for anyone.
- Keepalive is one sweep over all clients every ``ping_interval`` instead of a
  timer per connection, so an idle daemon wakes up about once per interval.
  Pings go through the sans-I/O protocol and never wait for a client's buffer
  to drain: one client that stopped reading cannot stall the sweep.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable, Iterable
from typing import Any, cast

from websockets.asyncio.messages import Assembler
from websockets.asyncio.server import ServerConnection
from websockets.frames import CloseCode, Opcode
from websockets.frames import Frame as WireFrame
from websockets.protocol import Event, State

from .chat import Dialect, Member
from .protocol import Frame
from .sites import Site
from .web import RequestHead

__all__ = ["Client", "Connection", "Outbox"]

logger = logging.getLogger(__name__)

#: How long a client dropped for being too slow gets to read its close frame.
SLOW_CLIENT_GRACE = 2.0
PING_PAYLOAD = b"pich"
DATA_OPCODES = (Opcode.TEXT, Opcode.BINARY, Opcode.CONT)


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
        super().data_received(data)

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


class Client(Member):
    """One open WebSocket connection: the engine's member plus its transport side."""

    __slots__ = ("connection", "pending", "queued", "closed", "join_timer")

    def __init__(
        self, connection: Connection, site: Site, dialect: Dialect, address: str = ""
    ) -> None:
        super().__init__(site, dialect, address)
        self.connection = connection
        self.pending: list[bytes] = []
        #: Bytes in ``pending``, counted when queued.
        self.queued = 0
        self.closed = False
        self.join_timer: asyncio.TimerHandle | None = None


class Outbox:
    """The write side of every client: queue frames, flush once per turn, drop slow readers.

    Args:
        send_queue_bytes: what one client may leave unread before it is dropped.
        on_drop: called for a client dropped here (too slow, no pong), before
            its connection closes, so the engine forgets it at once.
    """

    def __init__(self, send_queue_bytes: int, on_drop: Callable[[Client], None]) -> None:
        self.limit = send_queue_bytes
        self.on_drop = on_drop
        self.clients: set[Client] = set()
        self._dirty: list[Client] = []
        self._overflowing: list[Client] = []
        self._flush_handle: asyncio.Handle | None = None
        #: Counted for monitoring: clients dropped as too slow, and for no pong.
        self.slow_dropped = 0
        self.ping_timeouts = 0

    def add(self, client: Client) -> None:
        """A new open connection."""
        self.clients.add(client)

    def discard(self, client: Client) -> None:
        """The connection ended: nothing more is written to it."""
        client.closed = True
        client.pending = []
        client.queued = 0
        self.clients.discard(client)

    def send(self, member: Client, frame: Frame) -> None:
        """Queue one frame for one client."""
        self.broadcast((member,), frame)

    def broadcast(self, members: Iterable[Client], frame: Frame) -> None:
        """Queue a frame for clients; each one's queue is written once this loop turn.

        This is the broadcast's inner loop: kept lean.
        """
        dirty = self._dirty
        size = len(frame)
        limit = self.limit
        for client in members:
            if client.closed:
                continue
            pending = client.pending
            if not pending:
                dirty.append(client)
            pending.append(frame)
            client.queued += size
            if client.queued > limit:
                self._spill(client)
        if dirty and self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_soon(self._flush)

    def _spill(self, client: Client) -> None:
        """The queue passed the limit within one turn: hand it to the transport now.

        So pichat itself never holds more than ``send_queue_bytes`` for a client:
        a reader that keeps up takes the burst straight into its socket, and one
        that does not shows it as backlog and is dropped.
        """
        connection = client.connection
        transport = connection.transport
        if (
            connection.protocol.state is not State.OPEN
            or transport.get_write_buffer_size() > self.limit
        ):
            self._overflow(client)
            return
        transport.write(b"".join(client.pending))
        client.pending = []
        client.queued = 0

    def _overflow(self, client: Client) -> None:
        # Called mid-broadcast, maybe while the engine iterates the room:
        # stop queueing for it now, drop it at the flush.
        client.closed = True
        client.pending = []
        client.queued = 0
        self._overflowing.append(client)

    def _flush(self) -> None:
        self._flush_handle = None
        dirty, self._dirty = self._dirty, []
        overflowing, self._overflowing = self._overflowing, []
        for client in overflowing:
            self.drop(client, "too slow: send queue full")
        limit = self.limit
        for client in dirty:
            pending = client.pending
            if client.closed or not pending:
                continue
            data = pending[0] if len(pending) == 1 else b"".join(pending)
            client.pending = []
            client.queued = 0
            connection = client.connection
            if connection.protocol.state is not State.OPEN:
                continue
            transport = connection.transport
            # What is still buffered from earlier turns is what the client failed
            # to read; a burst written this turn is not held against it.
            if transport.get_write_buffer_size() > limit:
                self.drop(client, "too slow: send queue full")
                continue
            transport.write(data)

    def drop(self, client: Client, reason: str) -> None:
        """A client stopped reading: close it (1008) so nobody else waits for it."""
        logger.info("dropping a client: %s", reason)
        self.slow_dropped += 1
        self.on_drop(client)
        self.discard(client)
        connection = client.connection
        try:
            connection.protocol.send_close(1008, reason)
            connection.send_data()
        except Exception:  # the connection may already be failing
            logger.debug("close frame not sent", exc_info=True)
        # It is not reading, so it may never answer the close frame.
        asyncio.get_running_loop().call_later(SLOW_CLIENT_GRACE, connection.transport.abort)

    def close(self, client: Client, code: int, reason: str) -> None:
        """Close a client that is reading (join timeout, kick, ban): a closing handshake."""
        connection = client.connection
        if connection.protocol.state is not State.OPEN:
            return
        self._flush_one(client)
        try:
            connection.protocol.send_close(code, reason)
            connection.send_data()
        except Exception:
            logger.debug("close frame not sent", exc_info=True)
        asyncio.get_running_loop().call_later(SLOW_CLIENT_GRACE, connection.transport.abort)

    def _flush_one(self, client: Client) -> None:
        if client.pending and not client.closed:
            client.connection.transport.write(b"".join(client.pending))
            client.pending = []
            client.queued = 0

    def sweep(self) -> int:
        """Close clients that did not answer the last ping; ping the others.

        Returns:
            how many clients were closed for not answering.
        """
        closed = 0
        for client in list(self.clients):
            connection = client.connection
            if connection.protocol.state is not State.OPEN:
                continue
            if connection.awaiting_pong:
                # No pong for a whole interval: gone, or so far behind in
                # reading that it is a slow reader either way.
                closed += 1
                self.ping_timeouts += 1
                logger.info("closing a client that stopped answering pings")
                self.on_drop(client)
                self.discard(client)
                connection.transport.abort()
                continue
            connection.awaiting_pong = True
            try:
                connection.protocol.send_ping(PING_PAYLOAD)
                connection.send_data()
            except Exception:  # the transport may be failing: its handler will end
                logger.debug("ping not sent", exc_info=True)
        return closed
