"""A real redis-server for tests: a subprocess on a Unix socket in a temporary directory.

AOF is on (``appendonly yes``, ``appendfsync everysec``, no RDB snapshots), as
docs/scale-out.md asks of a production Redis, and the data directory outlives a
restart, so a test can restart Redis and find what it stored; ``kill()`` is a
crash, ``pause()`` / ``resume()`` a Redis that stops answering (SIGSTOP).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.daemon import TIMEOUT

__all__ = ["REDIS_SERVER", "RedisServer"]

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


class RedisServer:
    """One redis-server process; ``url`` is what pichat's ``redis_url`` takes."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        # sun_path is limited to 108 bytes: tmp_path can be longer.
        self._socket_dir = tempfile.mkdtemp(prefix="pichat-redis-")
        self.socket = os.path.join(self._socket_dir, "redis.sock")
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.directory / "redis.log"

    @property
    def url(self) -> str:
        """``unix:///…/redis.sock``."""
        return f"unix://{self.socket}"

    def start(self) -> None:
        """Start and wait until it answers PING."""
        with self.log_path.open("ab") as log:
            self.process = self._spawn(log)
        deadline = time.monotonic() + TIMEOUT
        while self.command("PING") != "+PONG":
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"redis-server did not start:\n{self.log_path.read_text()}")
            time.sleep(0.02)

    def _spawn(self, log: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                REDIS_SERVER,
                "--port", "0",
                "--unixsocket", self.socket,
                "--unixsocketperm", "700",
                "--dir", str(self.directory),
                "--appendonly", "yes",
                "--appendfsync", "everysec",
                "--save", "",
            ],
            stdout=log,
            stderr=log,
        )  # fmt: skip

    def command(self, *args: str) -> str:
        """One command in RESP; the first line of the reply ('' if Redis does not answer)."""
        request = f"*{len(args)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in args)
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(1.0)
                sock.connect(self.socket)
                sock.sendall(request.encode())
                return sock.recv(65536).decode().split("\r\n", 1)[0]
        except OSError:
            return ""

    def stop(self) -> None:
        """SHUTDOWN (AOF written), then wait."""
        if self.process is not None and self.process.poll() is None:
            self.command("SHUTDOWN")
            try:
                self.process.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """SIGKILL: a crash."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def pause(self) -> None:
        """SIGSTOP: it stops answering, connections stay open."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        """Stop and start on the same socket and data directory."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop (resuming it first if paused) and remove the socket directory."""
        if self.process is not None and self.process.poll() is None:
            self.resume()
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self._socket_dir, ignore_errors=True)
