"""systemd integration: sd_notify, the watchdog, socket activation, journald levels.

Each piece is inert outside systemd (no ``NOTIFY_SOCKET``, no ``WATCHDOG_USEC``,
no ``LISTEN_FDS``), so the same daemon runs from ``make run`` and as a unit.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import socket
import time

import sdnotify

__all__ = [
    "LISTEN_FDS_START",
    "JournalFormatter",
    "Notifier",
    "SystemdEnvironment",
    "Watchdog",
    "inherited_sockets",
    "systemd_environment",
]

LISTEN_FDS_START = 3

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class SystemdEnvironment:
    """What systemd told this process through its environment.

    Attributes:
        watchdog_usec: the watchdog interval in microseconds, 0 when off.
        listen_fds: how many sockets systemd passed (socket activation), from fd 3.
        journal: True when stderr is connected to the journal.
    """

    watchdog_usec: int = 0
    listen_fds: int = 0
    journal: bool = False


def _for_this_process(pid_variable: str) -> bool:
    pid = os.environ.get(pid_variable)
    return pid is None or pid == str(os.getpid())


def systemd_environment() -> SystemdEnvironment:
    """Read ``WATCHDOG_USEC``, ``LISTEN_FDS`` and ``JOURNAL_STREAM``.

    Each is honoured only when its ``*_PID`` companion names this process, as
    sd_listen_fds(3) and sd_watchdog_enabled(3) require.
    """
    watchdog = 0
    if _for_this_process("WATCHDOG_PID"):
        try:
            watchdog = max(0, int(os.environ.get("WATCHDOG_USEC", "0")))
        except ValueError:
            watchdog = 0
    listen = 0
    if "LISTEN_PID" in os.environ and _for_this_process("LISTEN_PID"):
        try:
            listen = max(0, int(os.environ.get("LISTEN_FDS", "0")))
        except ValueError:
            listen = 0
    journal = False
    stream = os.environ.get("JOURNAL_STREAM", "")
    if stream:
        try:
            device, inode = (int(part) for part in stream.split(":"))
            info = os.fstat(2)
            journal = (info.st_dev, info.st_ino) == (device, inode)
        except (ValueError, OSError):
            journal = False
    return SystemdEnvironment(watchdog_usec=watchdog, listen_fds=listen, journal=journal)


class _Inert:
    """The stand-in for sdnotify outside systemd: no socket, nothing sent."""

    socket = None

    def notify(self, state: str) -> None:
        """Nothing to notify."""


class Notifier:
    """Sends sd_notify(3) messages; does nothing when ``NOTIFY_SOCKET`` is unset."""

    def __init__(self) -> None:
        self._status = ""
        self._notifier = _Inert()
        if not os.environ.get("NOTIFY_SOCKET"):
            # sdnotify would open a socket anyway and leak it when the connect
            # fails: outside systemd, do not ask it at all.
            return
        self._notifier = sdnotify.SystemdNotifier()
        if self._notifier.socket is not None:
            # A blocking send would stall the event loop whenever the receiver
            # lags (its queue holds a few hundred datagrams): drop instead.
            self._notifier.socket.setblocking(False)
            self._notifier.debug = True  # raise, so that failures are logged here

    def send(self, *assignments: str) -> None:
        """Send ``KEY=VALUE`` assignments in one datagram; never blocks."""
        if self._notifier.socket is None:
            return
        try:
            self._notifier.notify("\n".join(assignments))
        except BlockingIOError:
            logger.warning("notify socket full, dropped %s", assignments[0])
        except OSError as exc:
            logger.warning("cannot notify systemd: %s", exc)

    def ready(self, status: str) -> None:
        """The service is up (also the end of a reload)."""
        self._status = status
        self.send("READY=1", f"STATUS={status}")

    def reloading(self) -> None:
        """A reload starts; systemd needs the CLOCK_MONOTONIC time with it."""
        self.send("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")

    def stopping(self) -> None:
        """Shutdown starts."""
        self.send("STOPPING=1", "STATUS=stopping")

    def status(self, status: str) -> None:
        """Update the one-line status ``systemctl status`` shows, when it changed."""
        if status != self._status:
            self._status = status
            self.send(f"STATUS={status}")


class Watchdog:
    """Pings systemd's watchdog at half its interval, from the event loop itself.

    Scheduling the ping with ``call_later`` (not a thread) is the point: a loop
    stuck in a busy callback stops pinging, and systemd restarts the service.
    """

    def __init__(self, notifier: Notifier, interval_usec: int) -> None:
        self.notifier = notifier
        self.period = interval_usec / 2_000_000
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Ping now and then every half interval."""
        logger.info("watchdog every %.1f s", self.period)
        self._ping()

    def _ping(self) -> None:
        self.notifier.send("WATCHDOG=1")
        self._handle = asyncio.get_running_loop().call_later(self.period, self._ping)

    def stop(self) -> None:
        """Stop pinging (at shutdown, once STOPPING=1 is sent)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


def inherited_sockets(count: int) -> list[socket.socket]:
    """The listening sockets systemd passed (fds 3, 4, …), ready for asyncio."""
    sockets = []
    for fd in range(LISTEN_FDS_START, LISTEN_FDS_START + count):
        sock = socket.socket(fileno=fd)
        sock.setblocking(False)
        sockets.append(sock)
    return sockets


class JournalFormatter(logging.Formatter):
    """Prefixes each line with its syslog priority (``<6>``) for journald.

    journald reads the prefix on stderr lines and files the entry at that
    level, so ``journalctl -p warning`` works; it adds timestamps itself.
    """

    PRIORITIES = {
        logging.DEBUG: 7,
        logging.INFO: 6,
        logging.WARNING: 4,
        logging.ERROR: 3,
        logging.CRITICAL: 2,
    }

    def format(self, record: logging.LogRecord) -> str:
        """Each line of the record (tracebacks too) with the priority prefix."""
        priority = self.PRIORITIES.get(record.levelno, 6)
        text = super().format(record)
        return "\n".join(f"<{priority}>{line}" for line in text.splitlines())
