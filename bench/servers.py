"""Starting and stopping the two servers under test, pinned to their core.

Both run as child processes of the benchmark, pinned with ``taskset`` to the core the
load generator does not use. pichat gets a config file and a state directory in a
temporary directory, and a ``NOTIFY_SOCKET`` of our own, so its start-up time is
measured to the ``READY=1`` datagram exactly as systemd would see it; the naive
server has no readiness protocol, so its start-up time is to its first accepted
TCP connection (measured for pichat too, for comparison).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .proc import usage

__all__ = ["NODE_DIR", "Kind", "Server", "ServerDied", "prepare_node", "start", "stop"]

Kind = Literal["pichat", "naive", "node"]

#: The checkout this benchmark belongs to: its servers run its code.
ROOT = Path(__file__).resolve().parent.parent
#: The Node.js ``ws`` peer: its script, package.json and package-lock.json.
NODE_DIR = Path(__file__).resolve().parent / "node"

PR_SET_PDEATHSIG = 1  # prctl(2)
#: How long a server may take to come up before the benchmark gives up.
START_TIMEOUT = 30.0
#: How long a server may take to shut down after SIGTERM before it is killed.
STOP_TIMEOUT = 20.0


class ServerDied(RuntimeError):
    """The server exited (or never came up); the message holds its log's tail."""


@dataclass
class Server:
    """A running server process and what its start-up looked like."""

    kind: Kind
    process: subprocess.Popen[bytes]
    port: int
    workdir: Path
    log: Path
    started: float
    #: Seconds from ``Popen`` to READY=1 (pichat) or to the first accepted connection.
    ready: float = 0.0
    #: Seconds from ``Popen`` to the first accepted TCP connection.
    first_accept: float = 0.0
    #: CPU seconds the server had used when it was ready: unlike the wall-clock
    #: figure, this barely moves when other work shares the core.
    ready_cpu: float = 0.0
    notify: socket.socket | None = None
    #: Every sd_notify datagram: (seconds since start, text).
    notifications: list[tuple[float, str]] = field(default_factory=list)

    @property
    def pid(self) -> int:
        """The server's process id (taskset execs the server, so it is the same one)."""
        return self.process.pid

    def log_tail(self, lines: int = 30) -> str:
        """The end of the server's stderr, for error messages."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pichat_config(workdir: Path, port: int) -> Path:
    """Write pichat's config for the benchmark: defaults, except limits that a
    thousand clients on one address and saturating senders would trip."""
    site = workdir / "site"
    site.mkdir(exist_ok=True)
    (site / "index.html").write_text("<!doctype html><title>bench</title>\n")
    config = workdir / "pichat.toml"
    config.write_text(
        f'host = "127.0.0.1"\n'
        f"port = {port}\n"
        f'state_dir = "{workdir / "state"}"\n'
        f'document_root = "{site}"\n'
        "max_connections = 20000\n"
        "max_connections_per_ip = 20000\n"
        "rate_messages = 1000000\n"
        "rate_window = 1.0\n"
    )
    return config


def command(kind: Kind, workdir: Path, port: int) -> list[str]:
    """The server's command line, pinned to core 0 when there are two cores or more."""
    if kind == "pichat":
        script = Path(sys.executable).with_name("pichat")
        if script.exists():
            argv = [str(script)]
        else:
            argv = [sys.executable, "-c", "from pichat.cli import main; main()"]
        argv += ["serve", "--config", str(pichat_config(workdir, port))]
    elif kind == "node":
        argv = [shutil.which("node") or "node", str(NODE_DIR / "server.js"), str(port)]
    else:
        argv = [sys.executable, "-m", "bench.naive", str(port)]
    taskset = shutil.which("taskset")
    if taskset and (os.cpu_count() or 1) >= 2:
        argv = [taskset, "-c", "0", *argv]
    return argv


async def start(kind: Kind, workdir: Path, extra_env: dict[str, str] | None = None) -> Server:
    """Start a server and wait until it is ready (READY=1 for pichat) and accepting.

    ``extra_env`` is added to its environment (``bench.ab``: a tree's ``PYTHONPATH``).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("PICHAT_")}
    # The pichat of this checkout, not the one the venv's editable install points
    # at: run from a worktree, the benchmark measured the main tree's code.
    env.setdefault("PYTHONPATH", str(ROOT))
    env.update(extra_env or {})
    env["PYTHONUNBUFFERED"] = "1"
    notify = None
    if kind == "pichat":
        path = workdir / "notify.sock"
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(path))
        notify.setblocking(False)
        env["NOTIFY_SOCKET"] = str(path)
    else:
        env.pop("NOTIFY_SOCKET", None)
    argv = command(kind, workdir, port)
    log = workdir / f"{kind}.log"
    loop = asyncio.get_running_loop()
    ready = asyncio.Event()
    with log.open("wb") as stderr:
        started = time.monotonic()
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=stderr,
            env=env,
            cwd=ROOT,
            preexec_fn=_die_with_parent,
        )
    server = Server(kind, process, port, workdir, log, started, notify=notify)
    if notify is not None:
        # Drain every datagram for the server's whole life: a full socket buffer
        # would block the daemon's sd_notify calls.
        def on_notify() -> None:
            while True:
                try:
                    data = notify.recv(4096)
                except BlockingIOError:
                    return
                now = time.monotonic() - started
                text = data.decode(errors="replace")
                server.notifications.append((now, text))
                if "READY=1" in text.splitlines() and not ready.is_set():
                    server.ready = now
                    server.ready_cpu = _cpu(process.pid)
                    ready.set()

        loop.add_reader(notify.fileno(), on_notify)
    try:
        async with asyncio.timeout(START_TIMEOUT):
            server.first_accept = await _first_accept(server)
            if notify is not None:
                await ready.wait()
            else:
                server.ready = server.first_accept
                server.ready_cpu = _cpu(process.pid)
    except BaseException:
        await stop(server)
        raise
    return server


def prepare_node() -> str | None:
    """Install the Node peer's locked dependencies (``npm ci``) when not there yet.

    Returns:
        why the Node peer cannot run (no node, no npm, ``npm ci`` failed), or None.
    """
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        return "node or npm is not installed"
    if (NODE_DIR / "node_modules" / "ws" / "package.json").exists():
        return None
    done = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        return f"npm ci failed: {done.stderr.strip()[-300:]}"
    return None


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the benchmark dies, however it dies.

    A benchmark killed mid-run must not leave a server behind on a shared machine.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _cpu(pid: int) -> float:
    try:
        return usage(pid).cpu
    except OSError:  # it exited already; _first_accept reports that
        return float("nan")


async def _first_accept(server: Server) -> float:
    loop = asyncio.get_running_loop()
    while True:
        if server.process.poll() is not None:
            raise ServerDied(f"{server.kind} exited at start:\n{server.log_tail()}")
        with socket.socket() as sock:
            sock.setblocking(False)
            try:
                await loop.sock_connect(sock, ("127.0.0.1", server.port))
            except OSError:
                await asyncio.sleep(0.002)
                continue
            return time.monotonic() - server.started


async def stop(server: Server) -> float:
    """SIGTERM, wait for the exit (SIGKILL after :data:`STOP_TIMEOUT`); seconds taken."""
    began = time.monotonic()
    process = server.process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        deadline = began + STOP_TIMEOUT
        while process.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if process.poll() is None:
            process.kill()
            process.wait()
    if server.notify is not None:
        asyncio.get_running_loop().remove_reader(server.notify.fileno())
        server.notify.close()
        server.notify = None
    return time.monotonic() - began
