"""Boot a cached Debian 13 root with systemd-nspawn and run commands in it.

The container boots on an overlay: the cached root is the read-only lower layer, a
temporary directory takes every write and is deleted after shutdown, so tests never
modify the cache and boot in well under a second. The overlay is mounted inside a
private mount namespace (``unshare --mount``) that ``systemd-nspawn`` then runs in,
so no mount is left behind even if the test process is killed.

``machinectl`` and ``systemd-run -M`` need a host systemd, which these machines lack;
commands enter the container with ``nsenter -t LEADER -a`` (every namespace of its
PID 1). By default the container shares the host's network: its ports are the host's
loopback ports, so a test must configure services in it to use a free port
(:func:`free_port`).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from .roots import DEBIAN_PATH, RootSpec, use_root

__all__ = ["Container", "ContainerError", "TIMEOUT", "boot", "free_port"]

# Every wait in these helpers is bounded by this (seconds), scaled like tests/daemon.py's.
TIMEOUT = 60.0 * float(os.environ.get("PICHAT_TEST_TIMEOUT_SCALE", "1"))

_ENV = {
    "PATH": DEBIAN_PATH,
    "LANG": "C.UTF-8",
    "HOME": "/root",
    "TERM": "dumb",
    "DEBIAN_FRONTEND": "noninteractive",
    "SYSTEMD_PAGER": "",
    "SYSTEMD_COLORS": "0",
}


class ContainerError(RuntimeError):
    """A command in the container failed, or the container did not come up."""


def free_port() -> int:
    """A TCP port free on the host's loopback right now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Container:
    """A booted container: run commands, read and write files, query systemd.

    Get one from :func:`boot`; it is only valid inside that ``with`` block.

    Attributes:
        leader: the host PID of the container's PID 1 (systemd).
        log: the file with systemd-nspawn's output (the container's console).
    """

    def __init__(self, leader: int, log: Path) -> None:
        self.leader = leader
        self.log = log

    def run(
        self,
        command: str | Sequence[str],
        *,
        check: bool = True,
        input: str | bytes | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = TIMEOUT,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the container, as root, and capture its output.

        Args:
            command: an argv list, or a string for ``sh -c``.
            check: raise :class:`ContainerError` (with the output) on a non-zero exit.
            input: fed to the command's stdin.
            env: extra environment variables (the base is a clean Debian one).
            timeout: seconds before the command is killed.

        Returns:
            The completed process; ``stdout`` and ``stderr`` are text.
        """
        argv = ["sh", "-c", command] if isinstance(command, str) else list(command)
        environment = [f"{key}={value}" for key, value in {**_ENV, **(env or {})}.items()]
        data = input.encode() if isinstance(input, str) else input
        result = subprocess.run(
            ["nsenter", "-t", str(self.leader), "-a", "env", "-i", *environment, *argv],
            input=data,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        completed = subprocess.CompletedProcess(
            argv,
            result.returncode,
            result.stdout.decode(errors="replace"),
            result.stderr.decode(errors="replace"),
        )
        if check and completed.returncode != 0:
            raise ContainerError(
                f"{shlex.join(argv)} exited with {completed.returncode}\n"
                f"--- stdout\n{completed.stdout}\n--- stderr\n{completed.stderr}"
            )
        return completed

    def path(self, inside: str) -> Path:
        """The host path of a file inside the running container (via /proc/PID/root)."""
        return Path(f"/proc/{self.leader}/root") / inside.lstrip("/")

    def write(self, inside: str, data: str | bytes, mode: int = 0o644) -> None:
        """Create or replace a file in the container (parent directories included)."""
        directory = os.path.dirname(inside)
        self.run(
            f"mkdir -p {shlex.quote(directory)} && cat > {shlex.quote(inside)} "
            f"&& chmod {mode:o} {shlex.quote(inside)}",
            input=data,
        )

    def read(self, inside: str) -> str:
        """The text of a file in the container."""
        return self.run(["cat", inside]).stdout

    def copy_in(self, source: Path, inside: str) -> None:
        """Copy a host file into the container."""
        self.write(inside, source.read_bytes())

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``systemctl ARGS`` in the container."""
        return self.run(["systemctl", *args], check=check)

    def show(self, unit: str, prop: str) -> str:
        """One property of a unit, e.g. ``show("pichat.service", "ActiveState")``."""
        return self.run(["systemctl", "show", "-P", prop, unit]).stdout.strip()

    def journal(self, unit: str, *, since_cursor: str | None = None) -> str:
        """The unit's journal, messages only; after ``since_cursor`` when given."""
        argv = ["journalctl", "--no-pager", "-o", "cat", "-u", unit]
        if since_cursor:
            argv += ["--after-cursor", since_cursor]
        return self.run(argv).stdout

    def journal_cursor(self) -> str:
        """The journal's current end, for :meth:`journal` ``since_cursor``."""
        out = self.run(["journalctl", "--no-pager", "-n", "0", "--show-cursor"]).stdout
        for line in out.splitlines():
            if line.startswith("-- cursor: "):
                return line[len("-- cursor: ") :]
        raise ContainerError(f"no cursor in journalctl output: {out!r}")

    def wait_for(
        self, predicate: str | Sequence[str], *, timeout: float = TIMEOUT, what: str = ""
    ) -> None:
        """Poll a command in the container until it succeeds.

        Raises:
            ContainerError: it still fails after ``timeout`` seconds (with its output).
        """
        deadline = time.monotonic() + timeout
        while True:
            result = self.run(predicate, check=False)
            if result.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise ContainerError(
                    f"timed out waiting for {what or predicate!r}:\n{result.stdout}{result.stderr}"
                )
            time.sleep(0.2)

    def wait_property(self, unit: str, prop: str, value: str, *, timeout: float = TIMEOUT) -> None:
        """Wait until ``systemctl show -P PROP UNIT`` prints ``value``."""
        self.wait_for(
            f'test "$(systemctl show -P {prop} {unit})" = {shlex.quote(value)}',
            timeout=timeout,
            what=f"{unit} {prop}={value}",
        )


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def _find_leader(nspawn: subprocess.Popen[bytes], log: Path, timeout: float) -> int:
    """The container's PID 1: the first descendant of systemd-nspawn running systemd."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if nspawn.poll() is not None:
            raise ContainerError(f"systemd-nspawn exited early:\n{log.read_text()}")
        queue = _children(nspawn.pid)
        while queue:
            pid = queue.pop()
            try:
                exe = os.readlink(f"/proc/{pid}/exe")
            except OSError:
                continue
            if exe.endswith("/systemd"):
                return pid
            queue.extend(_children(pid))
        time.sleep(0.05)
    raise ContainerError(f"no systemd inside systemd-nspawn:\n{log.read_text()}")


@contextlib.contextmanager
def boot(
    spec: RootSpec,
    *,
    binds: Mapping[Path, str] | None = None,
    private_network: bool = False,
    nspawn_args: Sequence[str] = (),
    timeout: float = TIMEOUT,
) -> Iterator[Container]:
    """Boot ``spec``'s root (built if needed) on a throw-away overlay.

    Yields once ``systemctl is-system-running --wait`` reports ``running`` or
    ``degraded``; on exit halts the container (SIGTERM to systemd-nspawn, then
    SIGKILL after ``timeout``) and deletes every change made in it.

    Args:
        spec: which cached root, e.g. :data:`tests.system.roots.BOOT`.
        binds: host paths to bind read-only into the container, ``{host: inside}``.
        private_network: give the container its own network namespace (loopback
            only) instead of sharing the host's.
        nspawn_args: more ``systemd-nspawn`` options.
        timeout: seconds allowed for boot and for shutdown.

    Example::

        with boot(BOOT, binds={dist: "/mnt/dist"}) as container:
            container.run("apt-get install -y /mnt/dist/pichat_0.1.0_all.deb")
            assert container.show("pichat.service", "ActiveState") == "active"
    """
    with use_root(spec) as lower, tempfile.TemporaryDirectory(prefix="pichat-ct.") as tmp:
        upper, work, merged = (Path(tmp) / name for name in ("upper", "work", "merged"))
        for directory in (upper, work, merged):
            directory.mkdir()
        log = Path(tmp) / "nspawn.log"
        machine = f"pichat-{uuid.uuid4().hex[:8]}"
        argv = [
            "systemd-nspawn",
            "-D",
            str(merged),
            "-b",
            "--console=passive",
            "--register=no",
            "--keep-unit",
            f"--machine={machine}",
            *(["--private-network"] if private_network else []),
            *(f"--bind-ro={host}:{inside}" for host, inside in (binds or {}).items()),
            *nspawn_args,
        ]
        mount = (
            f"mount -t overlay overlay -o lowerdir={lower},upperdir={upper},workdir={work} {merged}"
        )
        script = f"set -e; {mount}; exec {shlex.join(argv)}"
        with log.open("wb") as out:
            nspawn = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**_ENV, "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1"},
            )
        try:
            container = Container(_find_leader(nspawn, log, timeout), log)
            # systemd's private bus socket appears a moment after PID 1 starts.
            container.wait_for(
                "test -S /run/systemd/private", timeout=timeout, what="systemd's bus"
            )
            state = container.run(
                ["systemctl", "is-system-running", "--wait"], check=False, timeout=timeout
            ).stdout.strip()
            if state not in ("running", "degraded"):
                failed = container.run(["systemctl", "--failed", "--no-legend"], check=False)
                raise ContainerError(
                    f"container state {state!r}:\n{failed.stdout}{failed.stderr}\n{log.read_text()}"
                )
            yield container
        finally:
            nspawn.send_signal(signal.SIGTERM)
            try:
                nspawn.wait(timeout)
            except subprocess.TimeoutExpired:
                nspawn.kill()
                nspawn.wait()
            # The overlay's work dir holds root-owned 0000 entries; rmtree copes.
            shutil.rmtree(work, ignore_errors=True)
