"""Reading a process's memory, CPU time and context switches from /proc (Linux)."""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Usage", "demand", "rss_kib", "self_usage", "usage"]

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Usage:
    """A process's cumulative CPU time and context switches at one instant."""

    wall: float
    cpu: float
    voluntary: int
    involuntary: int
    #: Seconds the main thread (the event loop) was runnable but waiting for a CPU:
    #: how much other work on the core held the server back.
    waiting: float = 0.0

    @property
    def switches(self) -> int:
        """Voluntary and involuntary context switches together."""
        return self.voluntary + self.involuntary

    def since(self, before: Usage) -> Usage:
        """The difference between two samples."""
        return Usage(
            self.wall - before.wall,
            self.cpu - before.cpu,
            self.voluntary - before.voluntary,
            self.involuntary - before.involuntary,
            self.waiting - before.waiting,
        )


def _status(path: Path) -> dict[str, str]:
    fields = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def rss_kib(pid: int) -> int:
    """Resident set size (VmRSS) in KiB."""
    return int(_status(Path(f"/proc/{pid}/status"))["VmRSS"].split()[0])


def usage(pid: int) -> Usage:
    """CPU time (user + system, all threads) and context switches summed over threads.

    A thread's switches are only in its own ``task/TID/status``; the process's
    ``status`` shows the main thread's alone, so a helper thread (SQLite writer)
    that wakes up would otherwise go unseen.
    """
    wall = time.monotonic()
    stat = Path(f"/proc/{pid}/stat").read_text()
    # Fields after the parenthesised command name, which may contain spaces.
    fields = stat[stat.rindex(")") + 2 :].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    voluntary = involuntary = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            status = _status(task / "status")
        except FileNotFoundError:  # the thread ended meanwhile
            continue
        voluntary += int(status["voluntary_ctxt_switches"])
        involuntary += int(status["nonvoluntary_ctxt_switches"])
    return Usage(wall, cpu, voluntary, involuntary, _waiting(pid))


def _waiting(pid: int) -> float:
    """Run-queue wait of the main thread, from ``schedstat`` (0 where the kernel lacks it)."""
    try:
        fields = Path(f"/proc/{pid}/schedstat").read_text().split()
    except FileNotFoundError:
        return 0.0
    return int(fields[1]) / 1e9


def demand(pid: int) -> float:
    """Seconds the main thread has run or waited to run: its demand for a CPU.

    Unlike CPU time, this does not drop when neighbours crowd the core, so a
    server with work left still looks busy.
    """
    try:
        fields = Path(f"/proc/{pid}/schedstat").read_text().split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[0]) + int(fields[1])) / 1e9


def self_usage() -> Usage:
    """The generator's own CPU time and context switches."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    return Usage(time.monotonic(), own.ru_utime + own.ru_stime, own.ru_nvcsw, own.ru_nivcsw)
