"""Several pichat trees side by side with the Node peer: the 10-client latency probe.

    .venv/bin/python -m bench.ab before=/path/to/old/checkout,after=. [rounds]

Each tree's pichat runs with ``PYTHONPATH`` set to it (so an uncommitted change or
an experiment in a worktree is measured beside main), all pinned to core 0 as in
``make bench``, with the same interleaved rounds (``bench.run.latency_rounds``): a
change of a few tens of microseconds shows here, where two separate runs of the
whole benchmark differ by more than that.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

from . import run, servers
from .load import Generator


async def compare(trees: dict[str, str], rounds: int) -> None:
    """Start every tree's pichat and the Node peer, probe them in turns, print p50s."""
    with tempfile.TemporaryDirectory(prefix="pichat-ab-") as tmp:
        await _compare(trees, rounds, Path(tmp))


async def _compare(trees: dict[str, str], rounds: int, work: Path) -> None:
    names = [*trees, "node"]
    running: dict[str, servers.Server] = {}
    generators: dict[str, Generator] = {}
    plan = run.Plan(clients=run.Plan.small_clients, senders=10, rounds=rounds)
    try:
        for name in names:
            if name == "node":
                room = await run.open_room("node", work / name, plan.clients)
            else:
                tree = {"PYTHONPATH": str(Path(trees[name]).resolve())}
                room = await run.open_room("pichat", work / name, plan.clients, tree)
            running[name], generators[name] = room
        kinds: list[Any] = names
        results = await run.latency_rounds(kinds, running, generators, plan, 50.0)
    finally:
        for name, server in running.items():
            await servers.stop(server)
            generators[name].abort_all()
    node = results["node"]["p50_ms"]
    for name in names:
        result = results[name]
        rounds_p50 = " ".join(f"{r['p50_ms']:.2f}" for r in result["rounds"])
        print(
            f"{name:10s} p50 {result['p50_ms']:.3f} ms  p99 {result['p99_ms']:.3f} ms"
            f"  {result['p50_ms'] / node:.3f}x node  (rounds: {rounds_p50})"
        )


def main() -> None:
    """``name=tree,name=tree [rounds]``."""
    trees = dict(item.split("=", 1) for item in sys.argv[1].split(","))
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 6
    asyncio.run(compare(trees, rounds))


if __name__ == "__main__":
    main()
