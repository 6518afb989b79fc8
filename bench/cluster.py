"""The two-daemon run: two pichat daemons sharing one redis-server, clients split over both.

Measured beside one daemon alone (SQLite, the same clients on one port):
deliveries per second with senders on both daemons kept saturated (closed
loop, as in the main run), and the latency from a send on daemon A to its
delivery on every client of both daemons at a paced rate. ``python -m bench``
runs it last (phase ``cluster``); ``python -m bench.cluster`` runs it alone.

What limits it here: this machine has two cores; both daemons and Redis share
core 0 (the generator has core 1), so two daemons cannot beat one on CPU. What
the run shows is the cost of the Redis round trips (publish script, pub/sub) on
throughput and latency; on two Pis each daemon has its own CPU and the fan-out
work (one write per client) is split between them.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from . import servers
from .load import Generator, quiet
from .servers import Server

__all__ = ["main", "run"]

STAMP = re.compile(rb'"text": ?"X:(\d+):(\d+)')


@contextmanager
def redis_server(workdir: Path) -> Iterator[str]:
    """A redis-server with AOF (everysec) on a Unix socket; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (make host-packages)")
    workdir.mkdir(parents=True, exist_ok=True)
    sock = workdir / "redis.sock"
    argv = [binary, "--port", "0", "--unixsocket", str(sock), "--dir", str(workdir)]
    argv += ["--appendonly", "yes", "--appendfsync", "everysec", "--save", ""]
    with (workdir / "redis.log").open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)
        yield f"unix://{sock}"
    finally:
        process.terminate()
        process.wait()


@contextmanager
def with_redis(url: str) -> Iterator[None]:
    """pichat configs written meanwhile share ``url`` (bench.servers writes the config)."""
    original: Callable[[Path, int], Path] = servers.pichat_config

    def config(workdir: Path, port: int) -> Path:
        path = original(workdir, port)
        path.write_text(path.read_text() + f'redis_url = "{url}"\n')
        return path

    servers.pichat_config = config
    try:
        yield
    finally:
        servers.pichat_config = original


async def saturate(gens: list[Generator], pid: int, senders: int, window: int) -> float:
    """Deliveries per second over all generators, each keeping ``window`` in flight."""
    results = await asyncio.gather(
        *(g.saturate(pid, senders, window, warmup=1.0, seconds=4.0) for g in gens)
    )
    return sum(r.deliveries for r in results) / max(r.seconds for r in results)


async def latency(source: Generator, gens: list[Generator], rate: float, count: int) -> list[int]:
    """Send ``count`` stamped messages from ``source``; every delivery's latency (ns)."""
    samples: list[int] = []

    def on_text(client: object, payload: bytes, now: int) -> None:
        found = STAMP.search(payload)
        if found is not None:
            samples.append(now - int(found[2]))

    everyone = [client for g in gens for client in g.clients]
    for client in everyone:
        client.on_text = on_text
    try:
        for index in range(count):
            source.clients[index % 5].send_text(
                f'{{"type":"say","text":"X:{index}:{time.monotonic_ns()}"}}'.encode()
            )
            await asyncio.sleep(1 / rate)
        deadline = time.monotonic() + 10
        while len(samples) < count * len(everyone) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    finally:
        for client in everyone:
            client.on_text = None
    return samples


def _ms(samples: list[int], fraction: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * len(ordered)))] / 1e6


async def measure(daemons: list[Server], clients: int) -> dict[str, float]:
    """Connect ``clients`` split over ``daemons``, saturate, then probe latency."""
    gens = [Generator(d.port) for d in daemons]
    for gen in gens:
        await gen.connect(clients // len(gens))
    await asyncio.sleep(1.0)
    rate = await saturate(gens, daemons[0].pid, senders=5, window=100 // len(gens))
    for daemon in daemons:  # the other daemon's backlog must not count as latency
        await quiet(daemon.pid)
    samples = await latency(gens[0], gens, rate=20.0, count=60)
    for gen in gens:
        gen.close_all()
    expected = 60 * clients
    return {
        "deliveries_per_s": rate,
        "p50_ms": _ms(samples, 0.5),
        "p99_ms": _ms(samples, 0.99),
        "mean_ms": statistics.fmean(samples) / 1e6 if samples else float("nan"),
        "delivered": len(samples) / expected,
    }


async def run(workdir: Path, clients: int) -> dict[str, dict[str, float]]:
    """One daemon alone, then two sharing a Redis; the figures of each."""
    results: dict[str, dict[str, float]] = {}
    alone = await servers.start("pichat", workdir / "alone")
    try:
        results["one daemon (SQLite)"] = await measure([alone], clients)
    finally:
        await servers.stop(alone)
    with redis_server(workdir / "redis") as url, with_redis(url):
        pair = [await servers.start("pichat", workdir / f"node{n}") for n in (1, 2)]
        try:
            results["two daemons, one Redis"] = await measure(pair, clients)
        finally:
            for daemon in pair:
                await servers.stop(daemon)
    return results


def render(results: dict[str, dict[str, float]], clients: int) -> str:
    """The comparison table."""
    lines = [
        f"scale-out: {clients} clients, 5 senders per daemon saturating; latency of 60 "
        "messages at 20/s sent on the first daemon, measured on every client",
        f"{'':26} {'deliveries/s':>13} {'p50 ms':>8} {'p99 ms':>8} {'delivered':>10}",
    ]
    for name, r in results.items():
        lines.append(
            f"{name:26} {r['deliveries_per_s']:13.0f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} "
            f"{r['delivered']:10.1%}"
        )
    return "\n".join(lines)


def report(workdir: Path, clients: int = 200) -> dict[str, dict[str, float]]:
    """Run and print the table (the ``cluster`` phase of ``python -m bench``)."""
    if shutil.which("redis-server") is None:
        print("scale-out: skipped, redis-server is not installed (make host-packages)")
        return {}
    results = asyncio.run(run(workdir, clients))
    print()
    print(render(results, clients))
    return results


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.cluster [--clients N]``."""
    parser = argparse.ArgumentParser(prog="python -m bench.cluster")
    parser.add_argument("--clients", type=int, default=200)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="pichat-bench-cluster-") as tmp:
        report(Path(tmp), args.clients)
    return 0


if __name__ == "__main__":
    sys.exit(main())
