"""What systemd passes through the environment: watchdog, sockets, journal (plain calls)."""

from __future__ import annotations

import os

import pytest

from pichat.systemd import SystemdEnvironment, systemd_environment

SYSTEMD_VARIABLES = (
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "JOURNAL_STREAM",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No systemd variables from the test runner's own environment."""
    for name in SYSTEMD_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_systemd_environment_empty() -> None:
    """Outside systemd: no watchdog, no passed sockets, not the journal."""
    assert systemd_environment() == SystemdEnvironment(0, 0, False)


def test_watchdog_for_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """WATCHDOG_USEC is honoured when WATCHDOG_PID is absent or names this process."""
    monkeypatch.setenv("WATCHDOG_USEC", "5000000")
    assert systemd_environment().watchdog_usec == 5_000_000
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert systemd_environment().watchdog_usec == 5_000_000
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert systemd_environment().watchdog_usec == 0


@pytest.mark.parametrize("value", ["abc", "-5", ""])
def test_bad_watchdog_value_is_off(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """An unparsable or negative WATCHDOG_USEC means no watchdog."""
    monkeypatch.setenv("WATCHDOG_USEC", value)
    assert systemd_environment().watchdog_usec == 0


def test_listen_fds_need_this_pid(monkeypatch: pytest.MonkeyPatch) -> None:
    """LISTEN_FDS counts only with LISTEN_PID naming this process (sd_listen_fds(3))."""
    monkeypatch.setenv("LISTEN_FDS", "2")
    assert systemd_environment().listen_fds == 0
    monkeypatch.setenv("LISTEN_PID", str(os.getpid() + 1))
    assert systemd_environment().listen_fds == 0
    monkeypatch.setenv("LISTEN_PID", str(os.getpid()))
    assert systemd_environment().listen_fds == 2
    monkeypatch.setenv("LISTEN_FDS", "two")
    assert systemd_environment().listen_fds == 0


def test_journal_stream_must_be_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    """JOURNAL_STREAM means the journal only when it names stderr's device and inode."""
    info = os.fstat(2)
    monkeypatch.setenv("JOURNAL_STREAM", f"{info.st_dev}:{info.st_ino}")
    assert systemd_environment().journal is True
    monkeypatch.setenv("JOURNAL_STREAM", f"{info.st_dev}:{info.st_ino + 1}")
    assert systemd_environment().journal is False
    monkeypatch.setenv("JOURNAL_STREAM", "garbage")
    assert systemd_environment().journal is False
