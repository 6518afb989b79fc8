"""The server: admission of handshakes, the connection handler, reload.

The rest lives in its own module: the chat rules in :mod:`.chat` (sans I/O),
frames out and keepalive in :mod:`.outbox`, the periodic sweep and retention
in :mod:`.housekeeping`, plain HTTP in :mod:`.web`, each dialect in
:mod:`.v1` and :mod:`.legacy`. What is left here is the glue
websockets calls: ``process_request`` (answer HTTP, or admit an upgrade within
the limits), ``process_response`` and the per-connection ``handler``.

Admission is counted from ``process_request`` until the TCP connection is
lost (:meth:`.outbox.Connection.connection_lost`), which happens on every
path, including a peer that closes before reading its 101.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import functools
import http
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers, MultipleValuesError
from websockets.http11 import Request, Response

from . import __version__
from .addresses import address_key, client_address, parse_networks
from .chat import Chat, ChatConfig, Dialect
from .connection import Connection, size_limit_name
from .housekeeping import Housekeeping
from .legacy import LEGACY
from .metrics import Metrics
from .outbox import Client, FlushingListener, Outbox
from .passwords import PasswordHash, verify_password
from .ratelimit import LogThrottle
from .sites import Site, SiteTable, origin_allowed
from .tls import hsts_header
from .v1 import V1
from .web import Web, plain

if TYPE_CHECKING:
    from .history import History
    from .settings import Settings
    from .systemd import Notifier

__all__ = ["DIALECTS", "ChatServer", "address_key"]

logger = logging.getLogger(__name__)

#: Close code for a connection that did not join in time (4000-4999: private use).
JOIN_TIMEOUT_CODE = 4008

#: Every dialect by its subprotocol name; a client offering none speaks pichat.v1.
DIALECTS: dict[str, Dialect] = {dialect.subprotocol: dialect for dialect in (V1, LEGACY)}


class _NoHeaders(Headers):
    """An empty Headers that stays empty: shared by every open connection."""

    def _read_only(self, *args: object, **kwargs: object) -> None:
        raise TypeError("the handshake's headers are gone once the connection is open")

    __setitem__ = __delitem__ = clear = set_insecure = _read_only

    def update(self, *args: object, **kwargs: object) -> None:
        """Nothing to add (``Headers.__init__`` calls this with nothing)."""
        if args or kwargs:
            self._read_only()


#: What replaces the request's and response's headers once a connection is open.
NO_HEADERS = _NoHeaders()


class ChatServer:
    """The handlers given to ``websockets.serve``, around the chat engine.

    Args:
        settings: the validated configuration.
        history: where messages are stored (opened by the caller); the engine
            becomes its listener here.
        notifier: systemd notifications (inert outside systemd).
    """

    def __init__(self, settings: Settings, history: History, notifier: Notifier) -> None:
        self.history = history
        self.notifier = notifier
        self.outbox = Outbox(settings.send_queue_bytes, on_drop=self._forget)
        #: One thread for moderators' scrypt checks: off the event loop, and one
        #: at a time, so guesses cannot take every core from the chat.
        self.scrypt = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="pichat-scrypt")
        self.chat: Chat[Client] = Chat(
            self.outbox,
            history,
            ChatConfig.from_settings(settings),
            verifier=self._verify,
            schedule=lambda delay, callback: asyncio.get_running_loop().call_later(delay, callback),
        )
        history.start(FlushingListener(self.chat, self.outbox))
        #: Handshakes refused, by reason (``pichat_handshakes_refused_total``).
        self.refused: collections.Counter[str] = collections.Counter()
        self.metrics = Metrics(self, settings.metrics_allowed)
        self.web = Web(
            self.health,
            lambda: self.chat.config.limits.as_dict(),
            self.metrics,
            self._ban_notice,
        )
        self.started = time.monotonic()
        # Connections counted against the limits from process_request until
        # their TCP connection is lost.
        self._reserved: dict[ServerConnection, str] = {}
        self._per_address: collections.Counter[str] = collections.Counter()
        self._refusals: dict[str, LogThrottle] = collections.defaultdict(LogThrottle)
        self._status_handle: asyncio.TimerHandle | None = None
        self._housekeeping = Housekeeping(
            lambda: self.settings.ping_interval, self.outbox.sweep, self.expire
        )
        self.apply(settings)

    # Configuration.

    def apply(self, settings: Settings) -> None:
        """Take a configuration: sites, limits, retention (rooms are loaded separately)."""
        self.settings = settings
        self.trusted_proxies = parse_networks(settings.trusted_proxies)
        self.sites = SiteTable.from_settings(settings)
        self.chat.configure(ChatConfig.from_settings(settings))
        self.outbox.limit = settings.send_queue_bytes
        self.metrics.configure(settings.metrics_allowed)
        self.web.hsts = hsts_header(settings)

    async def load_rooms(self) -> None:
        """Load the history of every configured room not loaded yet."""
        await self.chat.load_rooms(self.sites.rooms())

    async def load_bans(self) -> None:
        """Take the bans stored in the history (at startup)."""
        await self.chat.moderation.load()

    async def expire(self) -> None:
        """Apply retention to every room, in memory and in the history."""
        await self.chat.expire()

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
        for key in ("redis_url", "redis_presence_ttl"):
            if getattr(old, key) != getattr(settings, key):
                # Not the values: a Redis URL may carry a password.
                logger.warning("%s changed: restart pichat to apply it", key)
        self.apply(settings)
        await self.load_rooms()
        await self.expire()

    # Admission.

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Answer plain HTTP requests; admit or refuse WebSocket handshakes."""
        try:
            return self._process_request(cast(Connection, connection), request)
        except MultipleValuesError as exc:
            # A repeated Host or Origin is ambiguous: refuse rather than guess.
            self.refused["bad_request"] += 1
            return plain(http.HTTPStatus.BAD_REQUEST, f"Bad request: repeated {exc}\n")

    def _refuse(self, reason: str, status: http.HTTPStatus, text: str, detail: str) -> Response:
        self.refused[reason] += 1
        held = self._refusals[reason].allow(time.monotonic())
        if held is not None:
            suffix = f" ({held} more since the last report)" if held else ""
            logger.info("refused a connection: %s%s", detail, suffix)
        return plain(status, text)

    def _process_request(self, connection: Connection, request: Request) -> Response | None:
        headers = request.headers
        host = headers.get("Host")
        site = self.sites.pick(host)
        method = connection.method
        # The client's address, through trusted proxies: /metrics is judged by it too,
        # or a proxy on loopback would open the metrics to everyone behind it.
        peer = str(connection.remote_address[0]) if connection.remote_address else ""
        header = self.settings.proxy_header
        address = client_address(peer, header, headers.get_all(header), self.trusted_proxies)
        if method != "GET" or "websocket" not in headers.get("Upgrade", "").lower():
            return self.web.respond(request, site, method, address)
        if not self.sites.admits(host):
            return self._refuse(
                "host",
                http.HTTPStatus.MISDIRECTED_REQUEST,
                "Misdirected request: this server does not answer that host name\n",
                f"unknown host name {host!r}",
            )
        if not origin_allowed(site, headers.get("Origin"), host):
            return self._refuse(
                "origin",
                http.HTTPStatus.FORBIDDEN,
                "Forbidden: origin not allowed\n",
                f"origin {headers.get('Origin')!r} not allowed for {site.label}",
            )
        key = address_key(address)
        if self.chat.moderation.banned_address(key) is not None:
            return self._refuse(
                "banned",
                http.HTTPStatus.FORBIDDEN,
                "Forbidden: this address is banned from the chat\n",
                f"banned address {key}",
            )
        if len(self._reserved) >= self.settings.max_connections:
            return self._refuse(
                "total",
                http.HTTPStatus.SERVICE_UNAVAILABLE,
                "Too many connections\n",
                f"{len(self._reserved)} connections",
            )
        if self._per_address[key] >= self.settings.max_connections_per_ip:
            return self._refuse(
                "address",
                http.HTTPStatus.SERVICE_UNAVAILABLE,
                "Too many connections from your address\n",
                f"{self._per_address[key]} connections from {key}",
            )
        self._reserved[connection] = key
        self._per_address[key] += 1
        connection.on_lost = self._release
        # Limits apply live after a reload: the frame size limit too.
        protocol = connection.protocol
        setattr(protocol, size_limit_name(protocol), self.settings.max_frame_bytes)
        return None

    def process_response(
        self, connection: ServerConnection, request: Request, response: Response
    ) -> None:
        """Release the reservation of a handshake that did not open a connection."""
        if response.status_code != 101:
            self._release(connection)

    def _release(self, connection: ServerConnection) -> None:
        key = self._reserved.pop(connection, None)
        if key is not None:
            self._per_address[key] -= 1
            if self._per_address[key] <= 0:
                del self._per_address[key]

    @property
    def reserved(self) -> int:
        """Connections counted against the limits now."""
        return len(self._reserved)

    # HTTP reports.

    def health(self, site: Site) -> dict[str, object]:
        """What ``/healthz`` reports: counts, and only the asking site's room."""
        room = self.chat.rooms.get(site.room)
        report: dict[str, object] = {
            "status": "ok" if self.history.healthy else "degraded",
            "version": __version__,
            "uptime": round(time.monotonic() - self.started, 3),
            "connections": len(self.outbox.clients),
            "rooms": len(self.chat.rooms),
            "online": {site.room: len(room.members) if room is not None else 0},
        }
        if not self.history.healthy:
            report["reason"] = "the history cannot be written"
        return report

    def _ban_notice(self, address: str) -> dict[str, object] | None:
        """What ``/site.json`` tells a banned address, so its page can explain the 403.

        A browser's WebSocket reports a refused handshake only as close code 1006,
        the same as a network failure; without this a banned page would keep
        saying "reconnecting".
        """
        ban = self.chat.moderation.banned_address(address) if address else None
        if ban is None:
            return None
        return {"until": ban.until_ms or None, "reason": ban.reason}

    # Connections.

    async def handler(self, connection: ServerConnection) -> None:
        """Serve one WebSocket connection until it closes."""
        conn = cast(Connection, connection)
        host = conn.request.headers.get("Host") if conn.request else None
        site = self.sites.pick(host)
        dialect = DIALECTS[conn.subprotocol or V1.subprotocol]
        # websockets keeps the handshake's request and response for the life of
        # the connection; their headers are ~4 KiB each connection, read only once.
        # One shared empty, read-only Headers for all (two of their own: 0.8 KiB).
        if conn.request is not None:
            conn.request.headers = NO_HEADERS
        if conn.response is not None:
            conn.response.headers = NO_HEADERS
        client = Client(conn, site, dialect, self._reserved.get(connection, ""))
        self.outbox.add(client)
        self._status_later()
        if dialect.joins:
            client.join_timer = asyncio.get_running_loop().call_later(
                self.settings.join_timeout, self._join_expired, client
            )
        try:
            self.chat.opened(client)
            # Messages arrive through Connection.listen, straight from data_received;
            # the handler only waits for the end (see Connection).
            conn.listen(functools.partial(self._received, client))
            await conn.ended
        finally:
            self._forget(client)

    def _received(self, client: Client, data: str | bytes) -> None:
        self.chat.received(client, data)
        if client.join_timer is not None and client.name is not None:
            client.join_timer.cancel()
            client.join_timer = None

    def _join_expired(self, client: Client) -> None:
        client.join_timer = None
        if client.name is None and not client.closed:
            logger.debug("closing a connection that did not join in time")
            self.outbox.close(client, JOIN_TIMEOUT_CODE, "join timeout")

    def _forget(self, client: Client) -> None:
        """The client is gone (or being dropped): out of its room and the outbox."""
        if client.join_timer is not None:
            client.join_timer.cancel()
            client.join_timer = None
        self.chat.closed(client)
        if client in self.outbox.clients:
            self.outbox.discard(client)
            self._status_later()

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
        joined = sum(self.chat.online().values())
        line = (
            f"{len(self.outbox.clients)} connections, {joined} online, {len(self.chat.rooms)} rooms"
        )
        # A daemon that started without its Redis says so in systemctl status too.
        return line if self.history.healthy else line + ", degraded (history unavailable)"

    def start_housekeeping(self) -> None:
        """Start the keepalive sweep and periodic retention."""
        self._housekeeping.start()

    def _verify(self, stored: PasswordHash, password: str, done: Callable[[bool], None]) -> None:
        """Run scrypt on the scrypt thread (it releases the GIL); answer on the loop.

        Tens of milliseconds and 16 MiB per check on a Pi: on the event loop, every
        wrong password sent from the internet would freeze every room for that long.
        """
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self.scrypt, verify_password, password, stored)

        def answered(future: asyncio.Future[bool]) -> None:
            done(not future.cancelled() and future.exception() is None and future.result())

        future.add_done_callback(answered)

    async def stop_housekeeping(self) -> None:
        """Stop the timers (at shutdown); leaving clients send no presence from now."""
        self.chat.closing = True
        self.chat.presence.cancel()
        if self._status_handle is not None:
            self._status_handle.cancel()
        await self._housekeeping.stop()
        self.scrypt.shutdown(wait=False, cancel_futures=True)
