"""Reading a process's memory, CPU time and context switches from /proc (Linux)."""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Usage", "rss_kib", "self_usage", "usage"]

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Usage:
    """A process's cumulative CPU time and context switches at one instant."""

    wall: float
    cpu: float
    voluntary: int
    involuntary: int

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
    return Usage(wall, cpu, voluntary, involuntary)


def self_usage() -> Usage:
    """The generator's own CPU time and context switches."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    return Usage(time.monotonic(), own.ru_utime + own.ru_stime, own.ru_nvcsw, own.ru_nivcsw)
