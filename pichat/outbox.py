"""Frames out to clients: the client record, queueing, slow readers, keepalive.

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

The read side of a connection is :mod:`.connection`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from websockets.protocol import State

from .chat import Dialect, Member
from .connection import SLOW_CLIENT_GRACE, Connection
from .history import Entry, HistoryListener
from .protocol import Frame
from .sites import Site

__all__ = ["Client", "FlushingListener", "Outbox"]

logger = logging.getLogger(__name__)

PING_PAYLOAD = b"pich"


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


class FlushingListener:
    """The engine as the history's listener, with each commit's frames written at once.

    A commit's broadcast would otherwise wait one more loop turn for the
    flush; nothing else can be queued for those clients in between that is
    worth the wait (the commit already batched what arrived in its turn).
    """

    def __init__(self, listener: HistoryListener, outbox: Outbox) -> None:
        self.listener = listener
        self.outbox = outbox

    def committed(self, batch: list[Entry]) -> None:
        """Broadcast, then write."""
        self.outbox.write_after(self.listener.committed, batch)

    def failed(self, batch: list[Entry]) -> None:
        """Tell the senders, then write."""
        self.outbox.write_after(self.listener.failed, batch)


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
        #: Inside :meth:`write_after`: it writes at the end, no flush is scheduled.
        self._holding = False
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
        if dirty and self._flush_handle is None and not self._holding:
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

    def write_after(self, report: Callable[[list[Entry]], None], batch: list[Entry]) -> None:
        """Call ``report(batch)``, then write what is queued now, not at the next turn.

        No flush is scheduled meanwhile: a cancelled one would still cost the
        loop an extra turn after every message.
        """
        self._holding = True
        try:
            report(batch)
        finally:
            self._holding = False
            if self._flush_handle is not None:  # queued earlier in this turn
                self._flush_handle.cancel()
            self._flush()

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
