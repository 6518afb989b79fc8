"""The daemon's lifecycle: start up, serve, reload, shut down.

startup: open the store, load the rooms, bind (or take systemd's sockets),
then READY=1. serve: until SIGTERM/SIGINT; SIGHUP reloads. shutdown: STOPPING=1,
close every client with 1001, drain the store, exit 0. Like uvicorn's
``Server``, every resource startup takes is pushed on one ``AsyncExitStack``,
so a failure at any step (a port in use, a damaged database) still releases
what the earlier steps took, and says so in one line with a sysexits code.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import resource
import signal
import socket
import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.typing import Subprotocol

from . import __version__, config_child
from .config_child import ChildFailed
from .connection import Connection
from .control import ControlServer
from .server import DIALECTS, ChatServer
from .settings_values import ConfigError
from .state_dir import HISTORY_FILE, StateLock, StoreError
from .store import Store
from .systemd import Notifier, SystemdEnvironment, Watchdog, inherited_sockets
from .tls import TLSError, reload_context, server_context

if TYPE_CHECKING:
    from .settings import Settings  # pydantic: the daemon holds plain values (settings_values)

__all__ = ["EX_CANTCREAT", "EX_UNAVAILABLE", "Daemon", "run"]

logger = logging.getLogger(__name__)

EX_CANTCREAT = 73  # sysexits(3): the state directory or database cannot be used
EX_UNAVAILABLE = 69  # sysexits(3): the address cannot be bound (in use, not ours)
EX_CONFIG = 78  # sysexits(3): a certificate or key that cannot be used
#: How long shutdown waits for clients to finish the closing handshake.
CLOSE_TIMEOUT = 3.0


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
    """A subprotocol pichat speaks when offered; none at all is ``pichat.v1`` too.

    websockets refuses a client that offers no subprotocol when the server has
    some; command-line clients (websocat, curl) rarely send one, so pichat
    accepts them and speaks ``pichat.v1``.
    """
    for name in DIALECTS:
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


class ListenError(Exception):
    """The configured address cannot be bound."""


class Daemon:
    """One run of the daemon; :meth:`run` returns the exit code.

    Args:
        settings: the validated configuration.
        config_file: re-read on SIGHUP (``None``: defaults and environment).
        env: what systemd passed.
    """

    def __init__(self, settings: Settings, config_file: Path | None, env: SystemdEnvironment):
        self.settings = settings
        self.config_file = config_file
        self.env = env
        self.notifier = Notifier()
        self.stop = asyncio.Event()
        #: Set once startup is complete (when READY=1 is sent).
        self.ready = asyncio.Event()
        self.servers: list[Server] = []
        self.chat: ChatServer | None = None
        self._reload_lock = asyncio.Lock()
        #: The TLS context every connection shares (``None``: plain HTTP).
        self.tls: ssl.SSLContext | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        #: Seconds a reload's configuration check may take before it is killed.
        self.config_timeout = config_child.TIMEOUT

    async def run(self) -> int:
        """Start up, serve until told to stop, shut down; the process exit code."""
        async with contextlib.AsyncExitStack() as stack:
            try:
                chat = await self.startup(stack)
            except StoreError as exc:
                logger.error("cannot open the history: %s", exc)
                return EX_CANTCREAT
            except ListenError as exc:
                logger.error("%s", exc)
                return EX_UNAVAILABLE
            except TLSError as exc:
                logger.error("invalid configuration: %s", exc)
                return EX_CONFIG
            _tune_collector()
            self.notifier.ready(chat.status_line())
            self.ready.set()
            logger.info("pichat %s ready", __version__)
            await self.stop.wait()
            logger.info("stopping")
            self.notifier.stopping()
        logger.info("stopped")
        return 0

    async def startup(self, stack: contextlib.AsyncExitStack) -> ChatServer:
        """Take every resource, each released by ``stack`` in reverse order."""
        _raise_file_limit()
        self.tls = server_context(self.settings)  # before anything is opened
        loop = asyncio.get_running_loop()
        # Handled from the start to the very end: a second SIGTERM while
        # closing changes nothing (and does not kill the process mid-drain).
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stop.set)
        stack.callback(self._remove_signal_handlers, signal.SIGTERM, signal.SIGINT)
        # Held until exit: a restore (or a second daemon) cannot use the directory meanwhile.
        lock = StateLock(self.settings.state_dir)
        lock.acquire()
        stack.callback(lock.release)
        if self.settings.redis_url:
            chat = self.chat = await self._start_cluster(stack)
        else:
            store = Store(self.settings.state_dir / HISTORY_FILE)
            await store.open()
            stack.push_async_callback(store.close)
            chat = self.chat = ChatServer(self.settings, store, self.notifier)
            chat.metrics.watch(store)
            await chat.load_rooms()
            await chat.load_bans()
        await chat.expire()

        self.servers = await self._listen(chat)
        stack.push_async_callback(self._close_servers)
        control = ControlServer(self.settings.control_path(), chat.chat)
        try:
            await control.start()
        except OSError as exc:
            raise ListenError(
                f"cannot make the control socket {control.path}: {exc.strerror or exc}"
            ) from None
        stack.push_async_callback(control.close)
        for server in self.servers:
            for sock in server.sockets:
                logger.info("listening on %s", _describe(sock))

        # A reload is moot once shutdown starts.
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup, chat)
        stack.callback(self._remove_signal_handlers, signal.SIGHUP)

        if self.env.watchdog_usec:
            watchdog = Watchdog(self.notifier, self.env.watchdog_usec)
            watchdog.start()
            stack.callback(watchdog.stop)
        chat.start_housekeeping()
        stack.push_async_callback(chat.stop_housekeeping)
        return chat

    async def _start_cluster(self, stack: contextlib.AsyncExitStack) -> ChatServer:
        """Shared rooms: wait (bounded) for Redis, then load the rooms from it.

        Past ``redis_start_timeout`` the daemon starts degraded rather than not at
        all: ``say`` answers ``unavailable`` and /healthz says degraded until Redis
        answers, then the rooms are read again and delivery starts.
        """
        from .cluster import Cluster  # redis is imported only when configured

        cluster = Cluster(self.settings)
        stack.push_async_callback(cluster.close)
        timeout = self.settings.redis_start_timeout
        if not await cluster.connect(timeout):
            logger.warning("redis did not answer within %g s: starting degraded", timeout)
            self.notifier.status("degraded: waiting for redis")
        chat = ChatServer(self.settings, cluster.history, self.notifier)
        cluster.attach(chat.chat)
        await chat.load_rooms()
        await cluster.load_moderation()
        cluster.start()
        return chat

    @staticmethod
    def _remove_signal_handlers(*signums: int) -> None:
        loop = asyncio.get_running_loop()
        for signum in signums:
            loop.remove_signal_handler(signum)

    async def _close_servers(self) -> None:
        for server in self.servers:
            server.close()  # closes every connection with 1001 (going away)
        for server in self.servers:
            try:
                await asyncio.wait_for(server.wait_closed(), CLOSE_TIMEOUT + 2)
            except TimeoutError:
                logger.warning("some connections did not close in time")

    async def _listen(self, chat: ChatServer) -> list[Server]:
        options = dict(
            process_request=chat.process_request,
            process_response=chat.process_response,
            subprotocols=list(DIALECTS),
            select_subprotocol=select_subprotocol,
            create_connection=Connection,
            compression=None,  # deflate costs ~100 KiB per connection and CPU per frame
            ping_interval=None,  # one sweep for all clients instead (Outbox.sweep)
            max_size=self.settings.max_frame_bytes,
            close_timeout=CLOSE_TIMEOUT,
            server_header="pichat",
            ssl=self.tls,
        )
        if self.env.listen_fds:
            # Socket activation: systemd holds the listening socket, so connections
            # that arrive while pichat restarts wait in its backlog, none refused.
            return [
                await serve(chat.handler, sock=sock, **options)  # type: ignore[arg-type]
                for sock in inherited_sockets(self.env.listen_fds)
            ]
        host = self.settings.host or None
        try:
            return [
                await serve(chat.handler, host, self.settings.port, **options)  # type: ignore[arg-type]
            ]
        except OSError as exc:
            where = f"{self.settings.host or '*'}:{self.settings.port}"
            reason = exc.strerror or str(exc)
            raise ListenError(f"cannot listen on {where}: {reason}") from None

    def _on_sighup(self, chat: ChatServer) -> None:
        task = asyncio.get_running_loop().create_task(self.reload(chat))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def reload(self, chat: ChatServer) -> None:
        """Re-read the configuration; a bad one leaves the running one in place.

        The check runs in a child process (:mod:`.config_child`), awaited with a
        timeout: the daemon never imports pydantic, and the loop keeps serving.
        A child that fails or hangs counts as a bad configuration.
        """
        async with self._reload_lock:
            self.notifier.reloading()
            logger.info("reloading the configuration")
            try:
                # In a child process: pydantic stays out of the daemon.
                settings = await config_child.validate(self.config_file, self.config_timeout)
            except (ConfigError, ChildFailed) as exc:
                logger.error("reload failed, keeping the running configuration: %s", exc)
            else:
                self._reload_tls(settings)
                try:
                    await chat.reload(settings)
                except StoreError as exc:
                    logger.error("reload could not load a room: %s", exc)
                self.settings = settings
                logging.getLogger("pichat").setLevel(settings.log_level.upper())
                logger.info("configuration reloaded")
            self.notifier.ready(chat.status_line())

    def _reload_tls(self, settings: Settings) -> None:
        """New handshakes get the certificate now on disk; open connections stay."""
        if (self.tls is None) != (not settings.tls_certificate):
            logger.warning("TLS turned on or off: restart pichat to apply it")
        elif self.tls is not None:
            try:
                reload_context(self.tls, settings)
            except TLSError as exc:
                logger.error("keeping the running certificate: %s", exc)
            else:
                logger.info("certificate reloaded from %s", settings.tls_certificate)


#: The collector's thresholds (generation 0, 1, 2); CPython's default is (700, 10, 10).
GC_THRESHOLDS = (7000, 10, 10)


def _tune_collector() -> None:
    """Fewer, cheaper garbage collections: start-up objects frozen, a larger young generation.

    Every connection is a few hundred long-lived objects, and a reconnect storm
    allocates fast, so with the default thresholds the collector ran full
    collections over every connection during the storm: measured while 3000
    clients joined, 827 ms of collection in all with pauses up to 349 ms (each a
    latency spike for everyone); with a young generation ten times larger,
    264 ms in all, at most 69 ms, and no full collection. The objects start-up
    made (modules, settings, history) live as long as the process, so they are
    frozen out of the collector's sight (collected first, so no start-up garbage
    is frozen with them).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def run(settings: Settings, config_file: Path | None, env: SystemdEnvironment) -> int:
    """Run the daemon in the foreground; returns the process exit code."""
    return asyncio.run(Daemon(settings, config_file, env).run())
