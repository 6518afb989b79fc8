"""The installed package in a booted Debian 13 container: the service under systemd.

One container per module (booting and installing take seconds); each test leaves
the service as it found it: running, with the packaged configuration.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from tests.package.conftest import Installed
from tests.system import TIMEOUT, Container
from tests.system.client import Chat, get_json, round_trip

# The first test's setup may build the Debian 13 roots and the .deb from nothing.
pytestmark = [pytest.mark.system, pytest.mark.timeout(1200)]

CONFFILE = "/etc/pichat/pichat.toml"
UNIT = "pichat.service"
# What a client sees while pichat restarts.
DISCONNECTED = (ConnectionClosed, InvalidHandshake, OSError, TimeoutError)


def set_key(container: Container, key: str, value: str) -> None:
    """Uncomment the first (top-level) ``#key = ...`` line of the conffile, with ``value``."""
    container.run(["sed", "-i", f"0,/^#{key} = .*/s//{key} = {value}/", CONFFILE])
    assert f"\n{key} = {value}\n" in container.read(CONFFILE)


def restart(container: Container) -> None:
    """systemctl restart, clearing the start-rate limit this module's restarts run into."""
    container.systemctl("reset-failed", UNIT)
    container.systemctl("restart", UNIT)


def _main_pid(container: Container) -> int:
    return int(container.show(UNIT, "MainPID"))


@pytest.fixture
def config(installed: Installed) -> Iterator[Container]:
    """The container; the conffile is restored (and reloaded) after the test."""
    container = installed.container
    original = container.read(CONFFILE)
    yield container
    container.write(CONFFILE, original)
    if container.show(UNIT, "ActiveState") == "active":
        container.systemctl("reload", UNIT)


def test_install_enables_and_starts_the_service(installed: Installed) -> None:
    """apt install leaves pichat.service enabled, running, and answering /healthz."""
    container = installed.container
    assert container.systemctl("is-enabled", UNIT).stdout.strip() == "enabled"
    assert container.show(UNIT, "SubState") == "running"
    health = get_json(installed.port, "/healthz")
    assert health["status"] == "ok"
    assert health["version"] == installed.deb.name.split("_")[1]


def test_socket_unit_is_installed_but_off(installed: Installed) -> None:
    """pichat.socket ships disabled and inactive: the service binds its own port."""
    container = installed.container
    state = container.systemctl("is-enabled", "pichat.socket", check=False).stdout.strip()
    assert state == "disabled"
    assert container.show("pichat.socket", "ActiveState") == "inactive"


def test_install_puts_files_in_place(installed: Installed) -> None:
    """The command, page, conffile, man page, docs and state directory are where documented."""
    container = installed.container
    container.run(["test", "-x", "/usr/bin/pichat"])
    container.run(["test", "-f", "/usr/share/pichat/public/index.html"])
    # The app's files too (public/* installs subdirectories whole).
    for page_file in ("sw.js", "manifest.webmanifest", "icons/icon-512.png", "js/typing.js"):
        container.run(["test", "-f", f"/usr/share/pichat/public/{page_file}"])
    conffiles = container.run(["dpkg-query", "-W", "-f=${Conffiles}", "pichat"]).stdout
    assert CONFFILE in conffiles
    assert container.run(["man", "-w", "8", "pichat"]).stdout.strip().endswith("pichat.8.gz")
    for doc in ("copyright", "changelog.gz"):
        container.run(["test", "-f", f"/usr/share/doc/pichat/{doc}"])
    assert container.read("/usr/share/doc/pichat/copyright").startswith(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
    )
    # DynamicUser= + StateDirectory=: systemd made it; the history is in it.
    container.run(["test", "-L", "/var/lib/pichat"])
    container.run(["test", "-f", "/var/lib/private/pichat/history.sqlite3"])
    page = container.run(["pichat", "--version"]).stdout
    assert page.strip() == f"pichat {installed.deb.name.split('_')[1]}"


async def test_chat_round_trip_on_the_configured_port(installed: Installed) -> None:
    """Two clients on the configured port: one says something, both receive it once."""
    welcome, message = await round_trip(installed.port)
    assert welcome["title"] == "pichat"
    assert message["text"] == "hello from the round trip"


async def test_status_reports_connections(installed: Installed) -> None:
    """STATUS= follows the number of connections."""
    container = installed.container
    chat = Chat(installed.port, "watcher")
    await chat.connect()
    try:
        container.wait_for(
            f"systemctl show -P StatusText {UNIT} | grep -q '^1 connection'",
            what="STATUS= with 1 connection",
        )
    finally:
        await chat.close()
    container.wait_for(
        f"systemctl show -P StatusText {UNIT} | grep -q '^0 connections'",
        what="STATUS= with 0 connections",
    )


def test_log_lines_carry_journal_priorities(installed: Installed) -> None:
    """pichat's stderr reaches the journal with its level as PRIORITY, prefix stripped."""
    out = installed.container.run(
        ["journalctl", "--no-pager", "-o", "json", "_SYSTEMD_UNIT=pichat.service"]
    ).stdout
    entries = [json.loads(line) for line in out.splitlines()]
    ready = [entry for entry in entries if "ready" in str(entry.get("MESSAGE", ""))]
    assert ready, "no 'ready' line in the journal"
    assert all(entry["PRIORITY"] == "6" for entry in ready)
    assert not [entry for entry in entries if str(entry.get("MESSAGE", "")).startswith("<")]


async def test_reload_applies_a_new_title_and_keeps_clients(
    installed: Installed, config: Container
) -> None:
    """systemctl reload with a changed title serves it at once; a connected client stays."""
    pid = _main_pid(config)
    chat = Chat(installed.port, "stayer")
    await chat.connect()
    try:
        set_key(config, "title", '"Reloaded room"')
        await asyncio.to_thread(config.systemctl, "reload", UNIT)
        assert get_json(installed.port, "/site.json")["title"] == "Reloaded room"
        # Same process, same connection: it can still talk.
        said = await chat.say("still here after the reload")
        assert said["text"] == "still here after the reload"
        assert _main_pid(config) == pid
    finally:
        await chat.close()
    fresh = Chat(installed.port, "newcomer")
    welcome = await fresh.connect()
    await fresh.close()
    assert welcome["title"] == "Reloaded room"


def test_reload_with_a_broken_config_keeps_the_old_one(
    installed: Installed, config: Container
) -> None:
    """A reload with an invalid file logs the bad key and keeps serving the old config."""
    pid = _main_pid(config)
    set_key(config, "title", '"Broken"')
    set_key(config, "rate_messages", "0")
    cursor = config.journal_cursor()
    config.systemctl("reload", UNIT)
    assert config.show(UNIT, "ActiveState") == "active"
    assert _main_pid(config) == pid
    assert get_json(installed.port, "/site.json")["title"] == "pichat"
    errors = config.run(
        ["journalctl", "--no-pager", "-o", "cat", "-u", UNIT, "-p", "err"]
        + ["--after-cursor", cursor]
    ).stdout
    assert "rate_messages" in errors, errors


def _processes(container: Container) -> list[int]:
    """The service's processes (its cgroup's): the daemon and any child it left."""
    group = container.show(UNIT, "ControlGroup")
    procs = container.read(f"/sys/fs/cgroup{group}/cgroup.procs")
    return [int(pid) for pid in procs.split()]


def test_the_packaged_daemon_maps_no_pydantic_and_leaves_no_child_after_a_reload(
    installed: Installed, config: Container
) -> None:
    """Under the hardened unit the reload's check runs in a reaped child: no pydantic mapped."""
    pid = _main_pid(config)
    set_key(config, "title", '"Checked in a child"')
    config.systemctl("reload", UNIT)
    assert get_json(installed.port, "/site.json")["title"] == "Checked in a child"
    assert _main_pid(config) == pid
    maps = config.read(f"/proc/{pid}/maps")
    assert "python3" in maps  # the daemon's own map was read
    assert "pydantic" not in maps
    assert _processes(config) == [pid]


# A module that shadows pydantic_settings for the configuration check alone (the
# daemon never imports it): the child then dies without an answer.
BROKEN_PYTHON = "/etc/pichat-test-python"
BROKEN_MODULE = f"{BROKEN_PYTHON}/pydantic_settings.py"
EX_SOFTWARE = 70


def test_a_configuration_check_that_dies_keeps_the_config_on_reload_and_is_70_at_start(
    installed: Installed, config: Container
) -> None:
    """The child crashes: a reload keeps the running config, a start exits 70 (systemd retries)."""
    drop_in = "/etc/systemd/system/pichat.service.d/test-python-path.conf"
    config.run(["mkdir", "-p", BROKEN_PYTHON])
    config.write(drop_in, f"[Service]\nEnvironment=PYTHONPATH={BROKEN_PYTHON}\n")
    config.systemctl("daemon-reload")
    restart(config)
    try:
        pid = _main_pid(config)
        config.write(BROKEN_MODULE, 'raise ImportError("broken on purpose")\n')
        set_key(config, "title", '"Never applied"')
        cursor = config.journal_cursor()
        config.systemctl("reload", UNIT)
        assert config.show(UNIT, "ActiveState") == "active"
        assert _main_pid(config) == pid
        assert get_json(installed.port, "/site.json")["title"] == "pichat"
        journal = config.journal(UNIT, since_cursor=cursor)
        assert "reload failed, keeping the running configuration" in journal, journal
        assert "broken on purpose" in journal, journal
        assert _processes(config) == [pid]

        cursor = config.journal_cursor()
        config.systemctl("restart", UNIT, check=False)
        config.wait_property(UNIT, "ExecMainStatus", str(EX_SOFTWARE))
        journal = config.journal(UNIT, since_cursor=cursor)
        assert "pichat: the configuration check exited with 1" in journal, journal
        # Not RestartPreventExitStatus=: a check that died may pass the next time.
        config.wait_for(
            f'test "$(systemctl show -P NRestarts {UNIT})" -gt 0', what="a restart after 70"
        )
    finally:
        config.run(["rm", "-rf", drop_in, BROKEN_PYTHON])
        config.systemctl("daemon-reload")
        restart(config)
        config.wait_property(UNIT, "SubState", "running")


def test_watchdog_restarts_a_stopped_daemon(installed: Installed) -> None:
    """kill -STOP freezes the event loop; the watchdog kills pichat and systemd restarts it."""
    container = installed.container
    drop_in = "/etc/systemd/system/pichat.service.d/test-watchdog.conf"
    container.write(drop_in, "[Service]\nWatchdogSec=2s\n")
    container.systemctl("daemon-reload")
    restart(container)
    try:
        restarts = int(container.show(UNIT, "NRestarts"))
        pid = _main_pid(container)
        cursor = container.journal_cursor()
        container.run(f"kill -STOP {pid}")  # the shell builtin: minbase has no procps
        container.wait_for(
            f'test "$(systemctl show -P NRestarts {UNIT})" -gt {restarts}',
            what="a restart by the watchdog",
        )
        container.wait_property(UNIT, "SubState", "running")
        assert _main_pid(container) != pid
        assert (
            "Watchdog timeout"
            in container.run(
                ["journalctl", "--no-pager", "-o", "cat", "--after-cursor", cursor]
            ).stdout
        )
        assert get_json(installed.port, "/healthz")["status"] == "ok"
    finally:
        container.run(["rm", "-f", drop_in])
        container.systemctl("daemon-reload")
        restart(container)


async def test_restart_with_resuming_clients_loses_and_duplicates_nothing(
    installed: Installed, config: Container
) -> None:
    """Across systemctl restart, resuming clients see every message exactly once."""
    container = config
    # 30 messages in a few seconds from one address: above the default rate limit.
    set_key(container, "rate_messages", "1000")
    container.systemctl("reload", UNIT)
    pid = _main_pid(container)
    reader, writer = Chat(installed.port, "reader"), Chat(installed.port, "writer")
    await reader.connect()
    await writer.connect()
    sent: list[str] = []

    async def send(text: str) -> None:
        while True:
            try:
                await writer.say(text)
                break
            except DISCONNECTED:
                # Resume, then send again only if the server had not stored it.
                await writer.close()
                await writer.reconnect()
                if any(message["text"] == text for message in writer.messages):
                    break
        sent.append(text)

    async def write_all() -> None:
        for _ in range(10):
            await send(f"restart test {len(sent)}")
        # Keep talking while systemd stops and starts pichat, until the writer has
        # been through the restart itself, then a little more.
        restarting = asyncio.create_task(asyncio.to_thread(restart, container))
        while len(writer.welcomes) < 2 or not restarting.done():
            await send(f"restart test {len(sent)}")
            await asyncio.sleep(0.05)  # pacing only: a few dozen messages, not thousands
        await restarting
        for _ in range(10):
            await send(f"restart test {len(sent)}")
        await send("restart test end")

    async def read_until_the_end() -> None:
        while not any(message["text"] == "restart test end" for message in reader.messages):
            try:
                await reader.expect("message")
            except DISCONNECTED:
                await reader.close()
                await reader.reconnect()

    await asyncio.wait_for(asyncio.gather(write_all(), read_until_the_end()), TIMEOUT)
    await reader.close()
    await writer.close()

    assert _main_pid(container) != pid, "pichat was not restarted"
    assert len(reader.welcomes) >= 2, "the reader never had to reconnect"
    # Everything stored after the test's first message, however many there are.
    first = next(m["id"] for m in writer.messages if m["text"] == sent[0])
    auditor = Chat(installed.port, "auditor")
    await auditor.connect(since=first - 1)
    await auditor.close()
    stored = [m for m in auditor.messages if m["text"].startswith("restart test ")]
    assert [m["text"] for m in stored] == sent, "lost, duplicated or reordered messages"
    seen = [m for m in reader.messages if m["text"].startswith("restart test ")]
    assert [m["id"] for m in seen] == [m["id"] for m in stored]


def test_systemd_analyze_verify_is_clean(installed: Installed) -> None:
    """systemd-analyze verify finds nothing to say about either unit."""
    result = installed.container.run(
        ["systemd-analyze", "verify", UNIT, "pichat.socket"], check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""


def test_exposure_is_at_most_1_5(installed: Installed) -> None:
    """systemd-analyze security rates pichat.service at 1.5 or better."""
    out = installed.container.run(
        ["systemd-analyze", "security", "--no-pager", UNIT], check=False
    ).stdout
    match = re.search(r"Overall exposure level for pichat\.service: (\d+\.\d+)", out)
    assert match, out
    print(f"exposure: {match.group(1)}")
    assert float(match.group(1)) <= 1.5, out


def test_lintian_reports_no_errors_or_warnings(deb: Path) -> None:
    """The build's lintian report (Debian 13's lintian) has no E: or W: tags."""
    report = deb.with_name(deb.name.removesuffix(".deb") + ".lintian.txt").read_text()
    assert not [line for line in report.splitlines() if line[:2] in ("E:", "W:")], report


def _free_low_port() -> int:
    """A port below 1024 free on the host's loopback (the container shares it)."""
    for port in range(1023, 900, -1):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port below 1024")


@pytest.fixture
def drop_ins(installed: Installed) -> Iterator[Container]:
    """The container; drop-ins named ``zz-test-extra.conf`` (read last) are removed after."""
    container = installed.container
    yield container
    container.run("rm -f /etc/systemd/system/pichat.*.d/zz-test-extra.conf")
    container.systemctl("disable", "--now", "pichat.socket")
    container.systemctl("daemon-reload")
    restart(container)
    container.wait_property(UNIT, "SubState", "running")


class _Hammer:
    """Threads that GET /healthz on a new connection each time, until stopped."""

    def __init__(self, port: int, threads: int = 4) -> None:
        self.port = port
        self.done = 0
        self.refused = 0
        # Other failures: under heavy load a request in flight while the old
        # process stops was seen reset. That is pichat's shutdown, not the socket
        # systemd keeps listening; printed, not asserted.
        self.others: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run) for _ in range(threads)]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                assert get_json(self.port, "/healthz")["status"] == "ok"
                with self._lock:
                    self.done += 1
            except urllib.error.URLError as exc:
                if isinstance(exc.reason, ConnectionRefusedError):
                    with self._lock:
                        self.refused += 1
                else:
                    self.others.append(repr(exc))
            except OSError as exc:
                self.others.append(repr(exc))

    def wait_for_more(self, count: int) -> None:
        """Block until ``count`` more requests have succeeded."""
        target = self.done + count
        deadline = time.monotonic() + TIMEOUT
        while self.done < target:
            assert time.monotonic() < deadline, f"requests stalled: {self.others[-3:]}"
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop and join the threads."""
        self._stop.set()
        for thread in self._threads:
            thread.join()


def test_socket_activation_on_a_low_port_refuses_nothing_across_a_restart(
    drop_ins: Container,
) -> None:
    """pichat.socket binds a port below 1024; pichat serves it, and a restart refuses nothing."""
    container = drop_ins
    port = _free_low_port()
    container.write(
        "/etc/systemd/system/pichat.socket.d/zz-test-extra.conf",
        f"[Socket]\nListenStream=\nListenStream=127.0.0.1:{port}\n",
    )
    container.systemctl("daemon-reload")
    container.systemctl("stop", UNIT)
    container.systemctl("enable", "--now", "pichat.socket")
    cursor = container.journal_cursor()
    # The first connection starts the service, which takes systemd's socket.
    assert get_json(port, "/healthz")["status"] == "ok"
    assert f"listening on 127.0.0.1:{port}" in container.journal(UNIT, since_cursor=cursor)
    assert container.show(UNIT, "CapabilityBoundingSet") == ""
    pid = _main_pid(container)

    hammer = _Hammer(port)
    try:
        hammer.wait_for_more(20)
        restart(container)
        # Keep connecting for a while after the new process took over.
        hammer.wait_for_more(20)
    finally:
        hammer.stop()
    assert _main_pid(container) != pid
    assert hammer.refused == 0
    if hammer.others:
        print(f"connections dropped by the stopping process: {hammer.others}")


def test_capability_drop_in_binds_a_low_port(drop_ins: Container) -> None:
    """The documented CAP_NET_BIND_SERVICE drop-in lets pichat bind a port below 1024 itself."""
    container = drop_ins
    port = _free_low_port()
    container.write(
        "/etc/systemd/system/pichat.service.d/zz-test-extra.conf",
        "[Service]\n"
        "AmbientCapabilities=CAP_NET_BIND_SERVICE\n"
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n"
        "PrivateUsers=no\n"
        f"Environment=PICHAT_PORT={port}\n",
    )
    container.systemctl("daemon-reload")
    restart(container)
    assert get_json(port, "/healthz")["status"] == "ok"


def test_autopkgtest_smoke_command_passes(installed: Installed) -> None:
    """debian/tests/control's Test-Command succeeds on the installed package."""
    control = (Path(__file__).resolve().parents[2] / "packaging/debian/tests/control").read_text()
    commands = [
        line.removeprefix("Test-Command:").strip()
        for line in control.splitlines()
        if line.startswith("Test-Command:")
    ]
    assert commands, control
    for command in commands:
        installed.container.run(command)
