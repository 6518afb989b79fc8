"""An in-process pichat for tests: the real daemon on a loopback port 0, in the test's loop.

The server tests' default, as websockets tests its own server: faster than a
subprocess, free of port races (the port is bound as 0 and read back), and
``make coverage`` sees the server's branches. Tests about the process itself
(signals, exit codes, notify, kill -9) use :mod:`tests.daemon` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from pichat.app import Daemon
from pichat.server import ChatServer
from pichat.settings import Settings
from pichat.systemd import SystemdEnvironment
from tests.daemon import PUBLIC, TIMEOUT

__all__ = ["Running", "running"]


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.name}: {record.getMessage()}")


class Running:
    """A started in-process daemon: where to reach it and what it logged."""

    def __init__(self, daemon: Daemon, task: asyncio.Task[int], lines: _Lines) -> None:
        self.daemon = daemon
        self.task = task
        self._lines = lines
        sock = daemon.servers[0].sockets[0]
        self.port: int = sock.getsockname()[1]

    @property
    def server(self) -> ChatServer:
        """The daemon's ChatServer (to look at its state)."""
        assert self.daemon.chat is not None
        return self.daemon.chat

    @property
    def http_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        """``ws://127.0.0.1:PORT/``."""
        return f"ws://127.0.0.1:{self.port}/"

    def log(self) -> str:
        """Everything the daemon logged so far, one line per record."""
        return "\n".join(self._lines.lines) + "\n"

    async def stop(self) -> int:
        """Shut down as SIGTERM would; returns the exit code."""
        self.daemon.stop.set()
        return await asyncio.wait_for(self.task, TIMEOUT)


def settings_for(directory: Path, config: dict[str, Any] | None = None) -> Settings:
    """The test defaults (loopback, port 0, own state dir, the repo's page) plus ``config``."""
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "state_dir": directory / "state",
        "document_root": PUBLIC,
        "log_level": "debug",
    }
    values.update(config or {})
    return Settings(**values)


@contextlib.asynccontextmanager
async def running(directory: Path, config: dict[str, Any] | None = None) -> AsyncIterator[Running]:
    """Start a daemon in this event loop; stop it (and check it stopped cleanly) after."""
    lines = _Lines()
    logger = logging.getLogger("pichat")
    logger.addHandler(lines)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    daemon = Daemon(settings_for(directory, config), None, SystemdEnvironment())
    task = asyncio.get_running_loop().create_task(daemon.run())
    try:
        ready = asyncio.get_running_loop().create_task(daemon.ready.wait())
        done, _ = await asyncio.wait({ready, task}, timeout=TIMEOUT, return_when="FIRST_COMPLETED")
        if ready not in done:
            ready.cancel()
            code = task.result() if task.done() else None
            raise RuntimeError(f"pichat did not start (exit {code}):\n" + "\n".join(lines.lines))
        result = Running(daemon, task, lines)
        yield result
        if not task.done():
            assert await result.stop() == 0
    finally:
        if not task.done():
            daemon.stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, TIMEOUT)
        logger.removeHandler(lines)
        logger.setLevel(level)
