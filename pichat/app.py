"""The daemon's lifecycle: start up, serve, reload, shut down.

startup: open the store, load the rooms, bind (or take systemd's sockets),
then READY=1. serve: until SIGTERM/SIGINT; SIGHUP reloads. shutdown: STOPPING=1,
close every client with 1001, drain the store, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import signal
import socket
from collections.abc import Sequence
from pathlib import Path

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.typing import Subprotocol

from . import __version__
from .protocol import LEGACY_SUBPROTOCOL, SUBPROTOCOL
from .server import ChatServer
from .settings import ConfigError, Settings, load
from .store import Store, StoreError
from .systemd import Notifier, SystemdEnvironment, Watchdog, inherited_sockets

__all__ = ["EX_CANTCREAT", "run"]

logger = logging.getLogger(__name__)

EX_CANTCREAT = 73  # sysexits(3): the state directory or database cannot be used
#: How long shutdown waits for clients to finish the closing handshake.
CLOSE_TIMEOUT = 3.0
HISTORY_FILE = "history.sqlite3"


def _raise_file_limit() -> None:
    # Each client is a file descriptor; the default soft limit (1024) is far
    # below max_connections. The hard limit is ours to take.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def select_subprotocol(
    connection: ServerConnection, offered: Sequence[Subprotocol]
) -> Subprotocol | None:
    """``pichat.v1`` or ``echo-protocol`` when offered; none at all is ``pichat.v1`` too.

    websockets refuses a client that offers no subprotocol when the server has
    some; command-line clients (websocat, curl) rarely send one, so pichat
    accepts them and speaks ``pichat.v1``.
    """
    for name in (SUBPROTOCOL, LEGACY_SUBPROTOCOL):
        if name in offered:
            return Subprotocol(name)
    return None


def _describe(sock: socket.socket) -> str:
    address = sock.getsockname()
    if sock.family == socket.AF_INET6:
        return f"[{address[0]}]:{address[1]}"
    if sock.family == socket.AF_INET:
        return f"{address[0]}:{address[1]}"
    return str(address)


class Daemon:
    """One run of the daemon; :meth:`run` returns the exit code."""

    def __init__(self, settings: Settings, config_file: Path | None, env: SystemdEnvironment):
        self.settings = settings
        self.config_file = config_file
        self.env = env
        self.notifier = Notifier()
        self.stop = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> int:
        """Serve until told to stop."""
        _raise_file_limit()
        store = Store(
            self.settings.state_dir / HISTORY_FILE,
            on_stored=lambda batch: chat.on_stored(batch),
            on_failed=lambda batch: chat.on_failed(batch),
        )
        try:
            await store.open()
        except StoreError as exc:
            logger.error("cannot open the history: %s", exc)
            return EX_CANTCREAT
        chat = ChatServer(self.settings, store, self.notifier)
        await chat.load_rooms()
        await chat.expire()

        servers = await self._listen(chat)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup, chat)

        for server in servers:
            for sock in server.sockets:
                logger.info("listening on %s", _describe(sock))
        self.notifier.ready(chat.status_line())
        watchdog = None
        if self.env.watchdog_usec:
            watchdog = Watchdog(self.notifier, self.env.watchdog_usec)
            watchdog.start()
        chat.start_housekeeping()
        logger.info("pichat %s ready", __version__)

        await self.stop.wait()

        logger.info("stopping")
        self.notifier.stopping()
        # A second SIGTERM while closing changes nothing; a reload is moot now.
        loop.remove_signal_handler(signal.SIGHUP)
        await chat.stop_housekeeping()
        for server in servers:
            server.close()  # closes every connection with 1001 (going away)
        for server in servers:
            try:
                await asyncio.wait_for(server.wait_closed(), CLOSE_TIMEOUT + 2)
            except TimeoutError:
                logger.warning("some connections did not close in time")
        await store.close()
        if watchdog is not None:
            watchdog.stop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        logger.info("stopped")
        return 0

    async def _listen(self, chat: ChatServer) -> list[Server]:
        options = dict(
            process_request=chat.process_request,
            process_response=chat.process_response,
            subprotocols=[SUBPROTOCOL, LEGACY_SUBPROTOCOL],
            select_subprotocol=select_subprotocol,
            compression=None,  # deflate costs ~100 KiB per connection and CPU per frame
            ping_interval=None,  # one sweep for all clients instead (ChatServer._sweep)
            max_size=self.settings.max_frame_bytes,
            close_timeout=CLOSE_TIMEOUT,
            server_header="pichat",
        )
        if self.env.listen_fds:
            # Socket activation: systemd holds the listening socket, so connections
            # that arrive while pichat restarts wait in its backlog, none refused.
            return [
                await serve(chat.handler, sock=sock, **options)  # type: ignore[arg-type]
                for sock in inherited_sockets(self.env.listen_fds)
            ]
        host = self.settings.host or None
        return [
            await serve(chat.handler, host, self.settings.port, **options)  # type: ignore[arg-type]
        ]

    def _on_sighup(self, chat: ChatServer) -> None:
        task = asyncio.get_running_loop().create_task(self.reload(chat))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def reload(self, chat: ChatServer) -> None:
        """Re-read the configuration; a bad one leaves the running one in place."""
        async with self._reload_lock:
            self.notifier.reloading()
            logger.info("reloading the configuration")
            try:
                settings = load(self.config_file)
            except ConfigError as exc:
                logger.error("reload failed, keeping the running configuration: %s", exc)
            else:
                await chat.reload(settings)
                self.settings = settings
                logging.getLogger("pichat").setLevel(settings.log_level.upper())
                logger.info("configuration reloaded")
            self.notifier.ready(chat.status_line())


def run(settings: Settings, config_file: Path | None, env: SystemdEnvironment) -> int:
    """Run the daemon in the foreground; returns the process exit code."""
    return asyncio.run(Daemon(settings, config_file, env).run())
