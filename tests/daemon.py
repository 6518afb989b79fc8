"""Run a real pichat daemon for tests: a subprocess on a loopback port.

The daemon is started exactly as systemd would (``python -m pichat serve
--config FILE``) with a real ``NOTIFY_SOCKET`` datagram socket, and the test
waits for its READY=1 instead of sleeping. The first start binds port 0 and the
port is read back from the daemon's "listening on" line, so no test races another
for a free port; the port is then kept in the config, so that ``restart()`` brings
the daemon back where clients will reconnect.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PUBLIC = REPO / "public"
#: Every wait in the tests is bounded by this, scaled by PICHAT_TEST_TIMEOUT_SCALE.
TIMEOUT = 10.0 * float(os.environ.get("PICHAT_TEST_TIMEOUT_SCALE", "1"))


def modules_after_import(*modules: str) -> list[str]:
    """Every module a fresh interpreter holds after importing ``modules``.

    In a child, so that what the tests themselves imported does not count.
    """
    code = f"import sys, {', '.join(modules)}\nprint('\\n'.join(sys.modules))\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return done.stdout.split()


def toml_value(value: Any) -> str:
    """Render a Python value as TOML (strings, numbers, bools, lists of those)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(value)


def render_toml(config: dict[str, Any]) -> str:
    """A TOML document from flat keys plus ``sites`` and ``moderators`` lists of tables."""
    tables = ("sites", "moderators")
    lines = [f"{key} = {toml_value(value)}" for key, value in config.items() if key not in tables]
    for table in tables:
        for entry in config.get(table, []):
            lines.append(f"\n[[{table}]]")
            lines += [f"{key} = {toml_value(value)}" for key, value in entry.items()]
    return "\n".join(lines) + "\n"


class Endpoint:
    """Where a daemon started some other way listens (socket activation, a container)."""

    def __init__(self, port: int) -> None:
        self.port = port

    @property
    def ws_url(self) -> str:
        """``ws://127.0.0.1:PORT/``."""
        return f"ws://127.0.0.1:{self.port}/"


class NotifyListener:
    """A real AF_UNIX datagram socket to pass as NOTIFY_SOCKET."""

    def __init__(self, directory: Path) -> None:
        # sun_path is limited to 108 bytes: tmp_path can be longer.
        self._dir = tempfile.mkdtemp(prefix="pichat-notify-")
        self.path = os.path.join(self._dir, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages: list[dict[str, str]] = []

    def wait_for(
        self, key: str, value: str | None = None, timeout: float = TIMEOUT
    ) -> dict[str, str]:
        """The next datagram holding ``key`` (with ``value`` if given)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {key}={value or '*'} in {self.messages}")
            self.sock.settimeout(remaining)
            data = self.sock.recv(4096).decode()
            fields = dict(line.split("=", 1) for line in data.splitlines() if "=" in line)
            self.messages.append(fields)
            if key in fields and (value is None or fields[key] == value):
                return fields

    def drain(self) -> list[dict[str, str]]:
        """Every datagram received so far without blocking."""
        self.sock.settimeout(0)
        try:
            while True:
                data = self.sock.recv(4096).decode()
                self.messages.append(
                    dict(line.split("=", 1) for line in data.splitlines() if "=" in line)
                )
        except BlockingIOError:
            pass
        return self.messages

    def close(self) -> None:
        """Remove the socket."""
        self.sock.close()
        os.unlink(self.path)
        os.rmdir(self._dir)


class Daemon:
    """A pichat process on 127.0.0.1 with its own state directory.

    Args:
        directory: where the config, history and log go (a test's tmp_path).
        config: TOML keys merged over the test defaults.
        env: extra environment variables.
    """

    def __init__(
        self,
        directory: Path,
        config: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.directory = Path(directory)
        #: Read back from the daemon once it listens (it binds port 0 first).
        self.port = 0
        self.config: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": 0,
            "state_dir": str(self.directory / "state"),
            "document_root": str(PUBLIC),
            "log_level": "debug",
        }
        self.config.update(config or {})
        self.config_file = self.directory / "pichat.toml"
        self.extra_env = env or {}
        self.process: subprocess.Popen[bytes] | None = None
        self.notify: NotifyListener | None = None
        self.log_path = self.directory / "pichat.log"
        self.write_config()

    @property
    def http_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        """``ws://127.0.0.1:PORT/``."""
        return f"ws://127.0.0.1:{self.port}/"

    def write_config(self, config: dict[str, Any] | None = None, raw: str | None = None) -> None:
        """Write the config file (``raw`` text as is, for broken-config tests)."""
        if config is not None:
            self.config = config
        self.config_file.write_text(raw if raw is not None else render_toml(self.config))

    def start(self, wait: bool = True) -> None:
        """Start the process and wait for READY=1."""
        self.notify = NotifyListener(self.directory)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PICHAT_")}
        env.update(NOTIFY_SOCKET=self.notify.path, PYTHONUNBUFFERED="1")
        env.update(self.extra_env)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pichat", "serve", "--config", str(self.config_file)],
            cwd=self.directory,
            env=env,
            stdout=log,
            stderr=log,
        )
        log.close()
        if wait:
            try:
                self.notify.wait_for("READY", "1")
            except TimeoutError:
                self.stop()
                raise RuntimeError(f"pichat did not become ready:\n{self.log()}") from None
            self._read_port()

    def _read_port(self) -> None:
        """Take the bound port from the log; keep it for restarts (clients come back there)."""
        found = re.findall(r"listening on 127\.0\.0\.1:(\d+)", self.log())
        if found:
            self.port = int(found[-1])
            if self.config.get("port") == 0:
                self.config["port"] = self.port
                self.write_config()

    def log(self) -> str:
        """Everything the daemon wrote to stdout and stderr."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, signum: int) -> None:
        """Send a signal to the daemon."""
        assert self.process is not None
        self.process.send_signal(signum)

    def stop(self, timeout: float = TIMEOUT) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._cleanup()
        return code

    def kill(self) -> None:
        """SIGKILL, as a power cut or the OOM killer would."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()
        self._cleanup()

    def restart(self) -> None:
        """Stop and start again on the same port and state directory."""
        self.stop()
        self.start()

    def _cleanup(self) -> None:
        if self.notify is not None:
            self.notify.close()
            self.notify = None

    def __enter__(self) -> Daemon:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.stop()
        else:
            self._cleanup()
