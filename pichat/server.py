"""The chat server: WebSocket connections, rooms and broadcast, static files on the same port.

This is the I/O shell around the sans-I/O core (:mod:`.protocol`, :mod:`.room`,
:mod:`.ratelimit`, :mod:`.sites`). Two choices shape it:

- Everything sent to a client goes through :meth:`ChatServer.send`, which queues
  already-encoded WebSocket frames and writes each client's queue with one
  ``transport.write`` per event-loop turn. A message is encoded once for all
  clients, and a burst of messages costs one system call per client, not one
  per message. A client whose queue passes ``send_queue_bytes`` is dropped so
  that it never delays anyone else.
- Keepalive is one sweep over all clients every ``ping_interval`` instead of a
  timer per connection, so an idle daemon wakes up about once per interval.
"""

from __future__ import annotations

import asyncio
import collections
import http
import json
import logging
import struct
import time
from collections.abc import Awaitable, Iterable
from typing import TYPE_CHECKING

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers, MultipleValuesError
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from . import __version__
from .protocol import (
    LEGACY_SUBPROTOCOL,
    Join,
    Limits,
    Message,
    ProtocolError,
    error_frame,
    legacy_history_frame,
    parse_frame,
    parse_legacy_frame,
    presence_frame,
    welcome_frame,
)
from .ratelimit import TokenBucket
from .retention import Retention
from .room import Room
from .sites import Site, SiteTable, origin_allowed
from .static import FileCache, resolve, security_headers

if TYPE_CHECKING:
    from .settings import Settings
    from .store import Item, Store
    from .systemd import Notifier

__all__ = ["ChatServer", "Client", "wire_frame"]

logger = logging.getLogger(__name__)

#: How long a client dropped for being too slow gets to read its close frame.
SLOW_CLIENT_GRACE = 2.0
#: Age-based retention is applied this often (and at start and reload).
EXPIRE_PERIOD = 3600.0

NOT_FOUND = (
    b"<!doctype html><html lang=en><meta charset=utf-8><title>Not found</title>"
    b"<h1>Not found</h1><p>There is nothing at this address.</p></html>\n"
)


def wire_frame(payload: bytes) -> bytes:
    """An unmasked, unfragmented WebSocket text frame (RFC 6455 §5.2).

    Server frames are never masked and pichat negotiates no extension, so the
    frame for a message is the same bytes for every client: build it once.
    """
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x81, length)
    elif length < 65536:
        header = struct.pack("!BBH", 0x81, 126, length)
    else:
        header = struct.pack("!BBQ", 0x81, 127, length)
    return header + payload


class Client:
    """One WebSocket connection and what the server knows about it."""

    __slots__ = (
        "connection",
        "site",
        "room",
        "legacy",
        "name",
        "avatar",
        "bucket",
        "pending",
        "closed",
        "ping",
    )

    def __init__(
        self,
        connection: ServerConnection,
        site: Site,
        room: Room[Client],
        legacy: bool,
    ) -> None:
        self.connection = connection
        self.site = site
        self.room = room
        self.legacy = legacy
        self.name: str | None = None
        self.avatar = ""
        self.bucket: TokenBucket | None = None
        self.pending: list[bytes] = []
        self.closed = False
        self.ping: Awaitable[float] | None = None


class ChatServer:
    """Rooms, clients and the request handlers given to ``websockets.serve``.

    Args:
        settings: the validated configuration.
        store: the history database (opened by the caller).
        notifier: systemd notifications (inert outside systemd).
    """

    def __init__(self, settings: Settings, store: Store, notifier: Notifier) -> None:
        self.store = store
        self.notifier = notifier
        self.rooms: dict[str, Room[Client]] = {}
        self.clients: set[Client] = set()
        self.files = FileCache()
        self.started = time.monotonic()
        self.shutting_down = False
        # Connections counted against the limits from process_request until
        # their handler ends (or their handshake fails).
        self._reserved: dict[ServerConnection, str] = {}
        self._per_address: collections.Counter[str] = collections.Counter()
        self._dirty: list[Client] = []
        self._flush_handle: asyncio.Handle | None = None
        self._status_handle: asyncio.TimerHandle | None = None
        self._housekeeping: asyncio.Task[None] | None = None
        self.apply(settings)

    # Configuration.

    def apply(self, settings: Settings) -> None:
        """Take a configuration: sites, limits, retention (rooms are loaded separately)."""
        self.settings = settings
        self.sites = SiteTable.from_settings(settings)
        self.limits = Limits(
            text=settings.max_message_length,
            name=settings.max_name_length,
            rate_messages=settings.rate_messages,
            rate_window=settings.rate_window,
        )
        self.retention = Retention(settings.history_max_messages, settings.history_max_age_days)
        for room in self.rooms.values():
            room.retention = self.retention
            self.store.retention[room.name] = self.retention
        now = time.monotonic()
        for client in self.clients:
            if client.bucket is not None:
                client.bucket.reconfigure(settings.rate_messages, settings.rate_window, now)

    async def load_rooms(self) -> None:
        """Load the history of every configured room not loaded yet."""
        for name in self.sites.rooms():
            if name not in self.rooms:
                history, last_id = await self.store.load(name, self.retention.max_messages)
                room: Room[Client] = Room(name, self.retention, history, last_id)
                self.rooms[name] = room
                self.store.retention[name] = self.retention
                logger.info("room %s: %d messages, last id %d", name, len(history), room.last_id)

    async def reload(self, settings: Settings) -> None:
        """Apply a new configuration without dropping a connection.

        Sites, titles, limits and retention change at once; clients stay in the
        room they joined. Host and port are bound at start: a change there is
        logged and waits for a restart.
        """
        old = self.settings
        for key in ("host", "port"):
            if getattr(old, key) != getattr(settings, key):
                logger.warning(
                    "%s changed from %r to %r: restart pichat to apply it",
                    key,
                    getattr(old, key),
                    getattr(settings, key),
                )
        if old.state_dir.resolve() != settings.state_dir.resolve():
            logger.warning("state_dir changed: restart pichat to apply it")
        self.apply(settings)
        await self.load_rooms()
        await self.expire()

    async def expire(self) -> None:
        """Apply retention to every room, in memory and in the database."""
        now_ms = time.time_ns() // 1_000_000
        for room in self.rooms.values():
            dropped = room.expire(now_ms)
            removed = await self.store.expire(room.name, now_ms)
            if dropped or removed:
                logger.info("room %s: retention dropped %d messages", room.name, removed)

    # HTTP side of the port.

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Answer plain HTTP requests; admit or refuse WebSocket handshakes."""
        try:
            return self._process_request(connection, request)
        except MultipleValuesError as exc:
            # A repeated Host or Origin is ambiguous: refuse rather than guess.
            return self._plain(http.HTTPStatus.BAD_REQUEST, f"Bad request: repeated {exc}\n")

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        headers = request.headers
        host = headers.get("Host")
        site = self.sites.pick(host)
        if "websocket" not in headers.get("Upgrade", "").lower():
            return self.http_response(request, site)
        if not origin_allowed(site, headers.get("Origin"), host):
            logger.info("refused origin %r for %s", headers.get("Origin"), site.label)
            return self._plain(http.HTTPStatus.FORBIDDEN, "Forbidden: origin not allowed\n")
        address = str(connection.remote_address[0]) if connection.remote_address else ""
        if len(self._reserved) >= self.settings.max_connections:
            logger.warning("refused a connection: %d connections", len(self._reserved))
            return self._plain(http.HTTPStatus.SERVICE_UNAVAILABLE, "Too many connections\n")
        if self._per_address[address] >= self.settings.max_connections_per_ip:
            return self._plain(
                http.HTTPStatus.SERVICE_UNAVAILABLE, "Too many connections from your address\n"
            )
        self._reserved[connection] = address
        self._per_address[address] += 1
        # Limits apply live after a reload: the frame size limit too.
        # (websockets 15 calls it max_size, later versions max_message_size.)
        protocol = connection.protocol
        limit_name = "max_message_size" if hasattr(protocol, "max_message_size") else "max_size"
        setattr(protocol, limit_name, self.settings.max_frame_bytes)
        return None

    def process_response(
        self, connection: ServerConnection, request: Request, response: Response
    ) -> None:
        """Release the reservation of a handshake that did not open a connection."""
        if response.status_code != 101:
            self._release(connection)

    def _release(self, connection: ServerConnection) -> None:
        address = self._reserved.pop(connection, None)
        if address is not None:
            self._per_address[address] -= 1
            if self._per_address[address] <= 0:
                del self._per_address[address]

    @staticmethod
    def _response(
        status: http.HTTPStatus,
        body: bytes,
        content_type: str,
        cache_control: str,
        host: str | None,
        extra: tuple[tuple[str, str], ...] = (),
    ) -> Response:
        """Every HTTP answer: its own headers plus the security headers."""
        headers = Headers()
        for name, value in security_headers(host):
            headers[name] = value
        headers["Content-Type"] = content_type
        headers["Cache-Control"] = cache_control
        for name, value in extra:
            headers[name] = value
        if status is not http.HTTPStatus.NOT_MODIFIED:
            headers["Content-Length"] = str(len(body))
        return Response(status.value, status.phrase, headers, body)

    def _plain(self, status: http.HTTPStatus, text: str) -> Response:
        return self._response(status, text.encode(), "text/plain; charset=utf-8", "no-store", None)

    def _json(self, value: object, host: str | None) -> Response:
        body = json.dumps(value).encode()
        return self._response(http.HTTPStatus.OK, body, "application/json", "no-cache", host)

    def http_response(self, request: Request, site: Site) -> Response:
        """A plain GET: health, the site's description, or a static file."""
        host = request.headers.get("Host")
        path = request.path.split("?", 1)[0]
        if path == "/healthz":
            return self._json(self.health(), host)
        if path == "/site.json":
            return self._json(
                {
                    "title": site.title,
                    "room": site.room,
                    "version": __version__,
                    "limits": self.limits.as_dict(),
                },
                host,
            )
        target = resolve(site.document_root, path)
        if target is None:
            return self._response(
                http.HTTPStatus.NOT_FOUND, NOT_FOUND, "text/html; charset=utf-8", "no-cache", host
            )
        accept = request.headers.get("Accept-Encoding", "")
        try:
            file = self.files.load(target, "gzip" in accept.lower())
        except OSError:
            logger.warning("cannot read %s", target, exc_info=True)
            return self._plain(http.HTTPStatus.INTERNAL_SERVER_ERROR, "Cannot read the file\n")
        extra: tuple[tuple[str, str], ...] = (("ETag", file.etag), ("Vary", "Accept-Encoding"))
        if file.gzip:
            extra += (("Content-Encoding", "gzip"),)
        tags = request.headers.get("If-None-Match", "")
        fresh = file.etag in {tag.strip() for tag in tags.split(",")} or tags.strip() == "*"
        status = http.HTTPStatus.NOT_MODIFIED if fresh else http.HTTPStatus.OK
        return self._response(
            status, b"" if fresh else file.body, file.content_type, file.cache_control, host, extra
        )

    def health(self) -> dict[str, object]:
        """What ``/healthz`` reports."""
        return {
            "status": "ok",
            "version": __version__,
            "uptime": round(time.monotonic() - self.started, 3),
            "connections": len(self.clients),
            "rooms": len(self.rooms),
            "online": {name: len(room.members) for name, room in self.rooms.items()},
        }

    # WebSocket side.

    async def handler(self, connection: ServerConnection) -> None:
        """Serve one WebSocket connection until it closes."""
        host = connection.request.headers.get("Host") if connection.request else None
        site = self.sites.pick(host)
        room = self.rooms[site.room]
        legacy = connection.subprotocol == LEGACY_SUBPROTOCOL
        # websockets keeps the handshake's request and response for the life of
        # the connection; their headers are ~4 KiB each connection, read only once.
        if connection.request is not None:
            connection.request.headers = Headers()
        if connection.response is not None:
            connection.response.headers = Headers()
        client = Client(connection, site, room, legacy)
        self.clients.add(client)
        self._status_later()
        try:
            if legacy:
                # The seed tutorial's clients get the history at once, no join.
                client.bucket = self._bucket()
                room.listeners.add(client)
                self.send(client, legacy_history_frame(room.recent(self.settings.history_replay)))
            async for data in connection:
                try:
                    if isinstance(data, bytes):
                        raise ProtocolError("binary_frame", "only text frames are accepted")
                    if legacy:
                        self.on_legacy_frame(client, data)
                    else:
                        self.on_frame(client, data)
                except ProtocolError as error:
                    self.send(client, error_frame(error))
        except ConnectionClosed:
            pass
        finally:
            self._forget(client)

    def _bucket(self) -> TokenBucket:
        return TokenBucket(self.settings.rate_messages, self.settings.rate_window, time.monotonic())

    def _forget(self, client: Client) -> None:
        client.closed = True
        self.clients.discard(client)
        self._release(client.connection)
        self._status_later()
        identity = client.room.leave(client)
        if identity is not None and not self.shutting_down:
            frame = presence_frame("leave", identity[0], identity[1], len(client.room.members))
            self.queue(client.room.members, wire_frame(frame))

    def on_frame(self, client: Client, data: str) -> None:
        """Handle one ``pichat.v1`` frame."""
        command = parse_frame(data, self.limits)
        if isinstance(command, Join):
            if client.name is not None:
                raise ProtocolError("already_joined", "you have already joined")
            self.join(client, command)
            return
        if client.name is None:
            raise ProtocolError("not_joined", "join before you say anything")
        self.post(client, client.name, client.avatar, command.text)

    def on_legacy_frame(self, client: Client, data: str) -> None:
        """Handle one ``echo-protocol`` frame: name, avatar and text in each."""
        name, avatar, text = parse_legacy_frame(data, self.limits)
        self.post(client, name, avatar, text)

    def join(self, client: Client, command: Join) -> None:
        """Enter the room: welcome with history and who is online, tell the others."""
        room = client.room
        # Registering and building the welcome happen in one callback: a message
        # stored in between is either in the history or broadcast to us, never
        # both, never neither.
        name = room.join(client, command.name, command.avatar, self.limits.name)
        client.name = name
        client.avatar = command.avatar
        client.bucket = self._bucket()
        if command.since is None:
            history, resumed, gap = room.recent(self.settings.history_replay), False, False
        else:
            history, resumed, gap = room.since(command.since, self.settings.history_replay)
        self.send(
            client,
            welcome_frame(
                name=name,
                avatar=command.avatar,
                room=room.name,
                title=client.site.title,
                limits=self.limits,
                history=history,
                online=room.online(),
                resumed=resumed,
                gap=gap,
            ),
        )
        frame = wire_frame(presence_frame("join", name, command.avatar, len(room.members)))
        self.queue((member for member in room.members if member is not client), frame)

    def post(self, client: Client, name: str, avatar: str, text: str) -> None:
        """Rate-limit, then store; the broadcast follows the commit."""
        assert client.bucket is not None
        wait = client.bucket.take(time.monotonic())
        if wait > 0:
            raise ProtocolError(
                "rate_limited", f"too many messages; wait {wait:.1f} s", retry_after=wait
            )
        message = client.room.create(name, avatar, text, time.time_ns() // 1_000_000)
        self.store.append(client.room.name, message, client)

    def on_stored(self, batch: list[Item]) -> None:
        """Messages are committed: add them to their room's history, broadcast them."""
        for room_name, message, _ in batch:
            room = self.rooms[room_name]
            room.append(message)
            self.broadcast(room, message)

    def on_failed(self, batch: list[Item]) -> None:
        """Messages could not be stored: tell each sender, broadcast nothing."""
        error = wire_frame(
            error_frame(ProtocolError("unavailable", "the message could not be stored; try again"))
        )
        self.queue([token for _, _, token in batch if isinstance(token, Client)], error)

    def broadcast(self, room: Room[Client], message: Message) -> None:
        """Send a stored message to everyone in its room, each dialect encoded once."""
        frame = message.frames.get("v1")
        if frame is None:
            frame = message.frames["v1"] = wire_frame(message.v1_json())
        self.queue(room.members, frame)
        if room.listeners:
            legacy = message.frames.get("legacy")
            if legacy is None:
                legacy = message.frames["legacy"] = wire_frame(message.legacy_json())
            self.queue(room.listeners, legacy)

    # Sending.

    def send(self, client: Client, payload: bytes) -> None:
        """Queue one JSON payload for one client."""
        self.queue((client,), wire_frame(payload))

    def queue(self, clients: Iterable[Client], frame: bytes) -> None:
        """Queue a wire frame for clients; each one's queue is written once this loop turn.

        This is the broadcast's inner loop: kept lean.
        """
        dirty = self._dirty
        for client in clients:
            if client.closed:
                continue
            pending = client.pending
            if not pending:
                dirty.append(client)
            pending.append(frame)
        if dirty and self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        dirty, self._dirty = self._dirty, []
        limit = self.settings.send_queue_bytes
        for client in dirty:
            pending = client.pending
            data = pending[0] if len(pending) == 1 else b"".join(pending)
            client.pending = []
            if client.closed:
                continue
            connection = client.connection
            if connection.protocol.state is not State.OPEN:
                continue
            transport = connection.transport
            # What is still buffered from earlier turns is what the client failed
            # to read; a burst written this turn is not held against it.
            if transport.get_write_buffer_size() > limit:
                self._drop_slow(client)
                continue
            transport.write(data)

    def _drop_slow(self, client: Client) -> None:
        """A client stopped reading: close it (1008) so nobody else waits for it."""
        logger.info("dropping a client whose send queue is full")
        self._forget(client)
        connection = client.connection
        try:
            connection.protocol.send_close(1008, "too slow: send queue full")
            connection.send_data()
        except Exception:  # the connection may already be failing
            logger.debug("close frame not sent", exc_info=True)
        # It is not reading, so it may never answer the close frame.
        asyncio.get_running_loop().call_later(SLOW_CLIENT_GRACE, connection.transport.abort)

    # Housekeeping.

    def _status_later(self) -> None:
        # Coalesce status updates: a reconnect storm sends one, not thousands.
        if self._status_handle is None:
            self._status_handle = asyncio.get_running_loop().call_later(1.0, self._status_now)

    def _status_now(self) -> None:
        self._status_handle = None
        self.notifier.status(self.status_line())

    def status_line(self) -> str:
        """The one-line status for ``systemctl status``."""
        joined = sum(len(room.members) for room in self.rooms.values())
        return f"{len(self.clients)} connections, {joined} online, {len(self.rooms)} rooms"

    def start_housekeeping(self) -> None:
        """Start the keepalive sweep and periodic retention."""
        self._housekeeping = asyncio.get_running_loop().create_task(
            self._housekeep(), name="pichat-housekeeping"
        )

    async def _housekeep(self) -> None:
        since_expire = 0.0
        while True:
            interval = self.settings.ping_interval or EXPIRE_PERIOD
            await asyncio.sleep(interval)
            if self.settings.ping_interval:
                await self._sweep()
            since_expire += interval
            if since_expire >= EXPIRE_PERIOD:
                since_expire = 0.0
                await self.expire()

    async def _sweep(self) -> None:
        """Close clients that did not answer the last ping; ping the others."""
        for client in list(self.clients):
            connection = client.connection
            if connection.protocol.state is not State.OPEN:
                continue
            ping = client.ping
            if isinstance(ping, asyncio.Future) and not ping.done():
                logger.info("closing a client that stopped answering pings")
                connection.transport.abort()
                continue
            try:
                client.ping = await connection.ping()
            except ConnectionClosed:
                continue

    async def stop_housekeeping(self) -> None:
        """Stop the timers (at shutdown)."""
        self.shutting_down = True
        if self._status_handle is not None:
            self._status_handle.cancel()
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            try:
                await self._housekeeping
            except asyncio.CancelledError:
                pass
