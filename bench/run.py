"""``python -m bench``: pichat against two peers, same load, same run.

The peers are the naive python-websockets broadcaster (:mod:`bench.naive`) and a
Node.js room on the ``ws`` package (``bench/node``, installed with ``npm ci``).
The servers run pinned to core 0 and this process (the load generator) to core 1.
Each server is started for connections (start-up time, memory per idle connection
at 0 / 1000 / 5000 clients, CPU and wake-ups of 100 idle clients, connection rate),
for traffic (saturation throughput and paced latency with 1000 clients, then paced
latency with 10), and for growth (10,000 idle clients: memory, and the time for all
of them to join again after a restart); a few more bare starts sample the start-up
time. The peers go first so that all see the same machine within a few minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from . import servers
from .load import CONNECT_CONCURRENCY, DRAIN_TIMEOUT, Generator, quiet
from .proc import Usage, rss_kib, usage
from .report import Metric, render, write_json
from .servers import Kind

__all__ = ["Plan", "main"]

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"
SERVER_CPU = 0
GENERATOR_CPU = 1


@dataclass(frozen=True)
class Plan:
    """How much of everything a run does; ``--quick`` shrinks it for development."""

    clients: int = 1000
    many_clients: int = 5000
    idle_clients: int = 100
    idle_seconds: float = 30.0
    senders: int = 10
    window: int = 200
    rounds: int = 3
    saturate_warmup: float = 1.0
    saturate_seconds: float = 5.0
    latency_rate: float = 50.0
    #: A second, light latency probe: well within both servers' capacity even on a
    #: busy machine, so it shows fan-out latency without a growing queue.
    light_rate: float = 5.0
    latency_warmup: float = 1.0
    latency_seconds: float = 5.0
    extra_starts: int = 3
    #: The small room of the 10-client latency probe.
    small_clients: int = 10
    #: The growth row: idle clients, and all of them rejoining after a restart.
    growth_clients: int = 10000
    #: Extra join rounds per server, alternating servers (the join rows' median).
    join_rounds: int = 6


QUICK = Plan(
    many_clients=2000,
    growth_clients=3000,
    idle_seconds=5.0,
    rounds=1,
    saturate_seconds=3.0,
    latency_warmup=0.5,
    latency_seconds=3.0,
    extra_starts=1,
    join_rounds=1,
)


def log(text: str) -> None:
    """Progress on stderr, so that the table on stdout stays clean."""
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def usage_dict(spent: Usage) -> dict[str, float]:
    """CPU and switches over an interval, with rates, for the JSON file."""
    return {
        "seconds": round(spent.wall, 3),
        "cpu_seconds": round(spent.cpu, 3),
        "cpu_share": round(spent.cpu / spent.wall, 3) if spent.wall else 0.0,
        "voluntary_switches": spent.voluntary,
        "involuntary_switches": spent.involuntary,
        "switches": spent.switches,
        "switches_per_second": round(spent.switches / spent.wall, 2) if spent.wall else 0.0,
        "waiting_share": round(spent.waiting / spent.wall, 3) if spent.wall else 0.0,
    }


async def connections_phase(kind: Kind, workdir: Path, plan: Plan) -> dict[str, Any]:
    """Start-up, idle memory at 0 / n / many clients, idle CPU, connection rate."""
    server = await servers.start(kind, workdir)
    result: dict[str, Any] = {
        "ready_s": server.ready,
        "ready_cpu_s": server.ready_cpu,
        "first_accept_s": server.first_accept,
    }
    log(f"{kind}: ready in {server.ready * 1000:.0f} ms (pid {server.pid}, port {server.port})")
    generator = Generator(server.port)
    try:
        # One client in and out first: the first handshake imports and caches
        # things once per process, which is not a per-connection cost.
        await generator.connect(1)
        generator.close_all()
        await quiet(server.pid)
        await asyncio.sleep(0.5)
        rss = {0: rss_kib(server.pid)}

        first = await generator.connect(plan.idle_clients)
        await quiet(server.pid)
        before = usage(server.pid)
        pings = generator.counters.pings
        log(f"{kind}: {plan.idle_clients} idle clients for {plan.idle_seconds:.0f} s")
        await asyncio.sleep(plan.idle_seconds)
        idle = usage(server.pid).since(before)
        result["idle"] = {
            "clients": plan.idle_clients,
            **usage_dict(idle),
            "pings_received": generator.counters.pings - pings,
        }

        rest = await generator.connect(plan.clients - plan.idle_clients)
        seconds = first.seconds + rest.seconds
        result["connect"] = {
            "clients": plan.clients,
            "seconds": round(seconds, 3),
            "per_second": plan.clients / seconds,
        }
        log(f"{kind}: {plan.clients} clients connected at {plan.clients / seconds:.0f}/s")
        await quiet(server.pid)
        rss[plan.clients] = rss_kib(server.pid)

        more = await generator.connect(plan.many_clients - plan.clients)
        result["connect_more"] = {
            "from": plan.clients,
            "to": plan.many_clients,
            "seconds": round(more.seconds, 3),
            "per_second": more.rate,
        }
        log(
            f"{kind}: {plan.many_clients} clients connected ({more.rate:.0f}/s from {plan.clients})"
        )
        waited = await quiet(server.pid, timeout=120)
        rss[plan.many_clients] = rss_kib(server.pid)
        result["settle_s"] = round(waited, 2)
        result["rss_kib"] = rss
        result["rss_per_connection_kib"] = {
            n: (rss[n] - rss[0]) / n for n in (plan.clients, plan.many_clients)
        }
        log(
            f"{kind}: RSS {rss[0]} / {rss[plan.clients]} / {rss[plan.many_clients]} KiB "
            f"at 0 / {plan.clients} / {plan.many_clients} clients"
        )
    finally:
        result["stop_s"] = await servers.stop(server)
        generator.abort_all()
    return result


async def join_round(kind: Kind, workdir: Path, plan: Plan) -> tuple[float, float]:
    """A fresh server: seconds for the first ``clients`` joins, then joins/s up to ``many``."""
    server = await servers.start(kind, workdir)
    generator = Generator(server.port)
    try:
        await generator.connect(1)
        generator.close_all()
        await quiet(server.pid)
        first = await generator.connect(plan.clients)
        await quiet(server.pid)
        more = await generator.connect(plan.many_clients - plan.clients)
        return first.seconds, more.rate
    finally:
        await servers.stop(server)
        generator.abort_all()


async def joins_phase(kinds: list[Kind], workdir: Path, plan: Plan) -> dict[str, list[Any]]:
    """More samples of the two join rows, the servers alternating round by round.

    A join storm lasts a second or two, so one sample per server lands on
    whatever the shared machine did in that second: in one full run the first
    1000 joins took pichat 1.69x the naive server's time, in a run minutes later
    0.89x. Fresh servers in alternating order, the median over the rounds.
    """
    samples: dict[str, list[Any]] = {kind: [] for kind in kinds}
    for number in range(plan.join_rounds):
        for kind in rounds_order(kinds, number):
            first, rate = await join_round(kind, workdir / f"{kind}-joins-{number}", plan)
            samples[kind].append((round(first, 3), rate))
            log(f"{kind}: join round {number + 1}: {first:.3f} s, then {rate:.0f}/s")
    return samples


def percentile(samples: list[int], fraction: float) -> float:
    """A percentile of nanosecond samples, in milliseconds (nearest rank)."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index] / 1e6


def rounds_order(kinds: list[Kind], number: int) -> list[Kind]:
    """Alternate which server goes first, so that neither always follows the other."""
    return kinds if number % 2 == 0 else kinds[::-1]


async def latency_rounds(
    kinds: list[Kind],
    running: dict[str, servers.Server],
    generators: dict[str, Generator],
    plan: Plan,
    rate: float,
) -> dict[str, dict[str, Any]]:
    """Paced latency rounds at ``rate`` messages/s, alternating servers; pooled percentiles."""
    samples: dict[str, list[int]] = {kind: [] for kind in kinds}
    probes: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
    for number in range(plan.rounds):
        for kind in rounds_order(kinds, number):
            server = running[kind]
            probe = await generators[kind].probe_latency(
                server.pid, plan.senders, rate, plan.latency_warmup, plan.latency_seconds
            )
            samples[kind].extend(probe.samples)
            probes[kind].append(
                {
                    "messages": probe.messages,
                    "expected_deliveries": probe.expected,
                    "deliveries": len(probe.samples),
                    "p50_ms": probe.percentile(0.50),
                    "p99_ms": probe.percentile(0.99),
                    "server": usage_dict(probe.server),
                    "generator": usage_dict(probe.generator),
                }
            )
            log(
                f"{kind}: round {number + 1}/{plan.rounds}: {rate:.0f} msg/s:"
                f" p50 {probe.percentile(0.5):.1f} ms, p99 {probe.percentile(0.99):.1f} ms"
                f" ({len(probe.samples)}/{probe.expected} deliveries);"
                f" server CPU {probe.server.cpu / probe.server.wall:.0%}"
            )
            await quiet(server.pid)
    results: dict[str, dict[str, Any]] = {}
    for kind in kinds:
        pooled = samples[kind]
        results[kind] = {
            "clients": plan.clients,
            "rate": rate,
            "rounds": probes[kind],
            "deliveries": len(pooled),
            "expected_deliveries": sum(probe["expected_deliveries"] for probe in probes[kind]),
            "p50_ms": percentile(pooled, 0.50),
            "p90_ms": percentile(pooled, 0.90),
            "p99_ms": percentile(pooled, 0.99),
            "max_ms": percentile(pooled, 1.0),
        }
    return results


async def open_room(
    kind: Kind, workdir: Path, clients: int, extra_env: dict[str, str] | None = None
) -> tuple[servers.Server, Generator]:
    """A started server with ``clients`` joined clients, quiet again after their joins."""
    server = await servers.start(kind, workdir, extra_env)
    generator = Generator(server.port)
    await generator.connect(clients)
    await quiet(server.pid)
    return server, generator


async def traffic_phase(kinds: list[Kind], workdir: Path, plan: Plan) -> dict[str, dict[str, Any]]:
    """Saturation throughput, then paced latency, with ``plan.clients`` clients each.

    Both servers run side by side (each idle while the other is measured) and the
    measurement alternates between them round by round: the machine is shared, and
    interleaving puts a slow minute on both sides of the ratio instead of one.
    """
    results: dict[str, dict[str, Any]] = {kind: {} for kind in kinds}
    running: dict[str, servers.Server] = {}
    generators: dict[str, Generator] = {}
    try:
        for kind in kinds:
            server, generators[kind] = await open_room(kind, workdir / kind, plan.clients)
            running[kind] = server
            results[kind]["traffic_ready_s"] = server.ready
            results[kind]["traffic_ready_cpu_s"] = server.ready_cpu
        runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
        for number in range(plan.rounds):
            for kind in rounds_order(kinds, number):
                server = running[kind]
                run = await generators[kind].saturate(
                    server.pid,
                    plan.senders,
                    plan.window,
                    plan.saturate_warmup,
                    plan.saturate_seconds,
                )
                runs[kind].append(
                    {
                        "seconds": round(run.seconds, 3),
                        "messages": run.messages_sent,
                        "deliveries": run.deliveries,
                        "deliveries_per_second": run.rate,
                        "drained": run.drained,
                        "deliveries_per_cpu_second": run.deliveries / run.server.cpu
                        if run.server.cpu
                        else float("nan"),
                        "server": usage_dict(run.server),
                        "generator": usage_dict(run.generator),
                    }
                )
                log(
                    f"{kind}: round {number + 1}/{plan.rounds}: {run.rate:,.0f} deliveries/s;"
                    f" server CPU {run.server.cpu / run.seconds:.0%},"
                    f" generator CPU {run.generator.cpu / run.generator.wall:.0%}"
                )
                await quiet(server.pid)
        for kind in kinds:
            results[kind]["throughput"] = {
                "clients": plan.clients,
                "senders": plan.senders,
                "window": plan.window,
                "rounds": runs[kind],
                "deliveries_per_second": statistics.median(
                    run["deliveries_per_second"] for run in runs[kind]
                ),
                "deliveries_per_cpu_second": statistics.median(
                    run["deliveries_per_cpu_second"] for run in runs[kind]
                ),
                "server_cpu_share": statistics.median(
                    run["server"]["cpu_share"] for run in runs[kind]
                ),
                "generator_cpu_share": max(run["generator"]["cpu_share"] for run in runs[kind]),
            }
        for key, rate in (("latency", plan.latency_rate), ("latency_light", plan.light_rate)):
            latency = await latency_rounds(kinds, running, generators, plan, rate)
            for kind in kinds:
                results[kind][key] = latency[kind]
    finally:
        for name, process in running.items():
            if name in generators:
                # Close frames before the stop: the server dropped a client (1008).
                results[name]["traffic_closed_by_server"] = generators[name].counters.closes
            results[name]["traffic_stop_s"] = await servers.stop(process)
            if name in generators:
                generators[name].abort_all()
    return results


async def small_phase(kinds: list[Kind], workdir: Path, plan: Plan) -> dict[str, dict[str, Any]]:
    """Paced latency in a small room (``small_clients``): where the in-server time shows."""
    running: dict[str, servers.Server] = {}
    generators: dict[str, Generator] = {}
    try:
        for kind in kinds:
            running[kind], generators[kind] = await open_room(
                kind, workdir / kind, plan.small_clients
            )
        senders = min(plan.senders, plan.small_clients)
        small = Plan(**{**plan.__dict__, "clients": plan.small_clients, "senders": senders})
        latency = await latency_rounds(kinds, running, generators, small, plan.latency_rate)
        return {kind: {"latency_small": latency[kind]} for kind in kinds}
    finally:
        for name, server in running.items():
            await servers.stop(server)
            generators[name].abort_all()


async def growth_phase(kind: Kind, workdir: Path, plan: Plan) -> dict[str, Any]:
    """``growth_clients`` idle clients: RSS; then a restart and all of them joining again.

    The rejoin is the reconnect storm after an upgrade: every client at once (as many
    handshakes in flight as the generator allows), into a server that just started.
    """
    count = plan.growth_clients
    server = await servers.start(kind, workdir)
    generator = Generator(server.port)
    result: dict[str, Any] = {"clients": count}
    try:
        first = await generator.connect(count, timeout=600)
        await quiet(server.pid, timeout=120)
        result["join_s"] = round(first.seconds, 3)
        result["rss_kib"] = rss_kib(server.pid)
        log(f"{kind}: {count} clients joined in {first.seconds:.1f} s, RSS {result['rss_kib']} KiB")
    finally:
        await servers.stop(server)
        generator.abort_all()
    server = await servers.start(kind, workdir)
    generator = Generator(server.port)
    try:
        again = await generator.connect(count, timeout=600)
        result["rejoin_s"] = round(again.seconds, 3)
        await quiet(server.pid, timeout=120)
        result["rejoin_rss_kib"] = rss_kib(server.pid)
        log(f"{kind}: after a restart all {count} rejoined in {again.seconds:.1f} s")
    finally:
        await servers.stop(server)
        generator.abort_all()
    return result


async def start_phase(kind: Kind, workdir: Path, count: int) -> list[tuple[float, float]]:
    """Bare starts: (seconds, CPU seconds) to READY (naive: first accept) of each."""
    times = []
    for number in range(count):
        server = await servers.start(kind, workdir / f"start{number}")
        times.append((server.ready, server.ready_cpu))
        await servers.stop(server)
    return times


def metrics(results: dict[str, dict[str, Any]], plan: Plan) -> list[Metric]:
    """The table's rows from every server's results; targets are issue 12's."""

    def get(kind: str, *path: Any) -> float | None:
        value: Any = results.get(kind)
        for key in path:
            if not isinstance(value, dict) or key not in value:
                return None
            value = value[key]
        return None if value is None else float(value)

    def row(key: str, label: str, unit: str, *path: Any, **extra: Any) -> Metric:
        pichat, naive, node = (get(kind, *path) for kind in ("pichat", "naive", "node"))
        return Metric(key, label, unit, pichat, naive, node, **extra)

    n, many, small, growth = (
        plan.clients,
        plan.many_clients,
        plan.small_clients,
        plan.growth_clients,
    )
    rate = plan.latency_rate
    rows = [
        row(
            "deliveries_per_second",
            f"deliveries/s, {n} clients, {plan.senders} senders",
            "/s",
            "throughput",
            "deliveries_per_second",
            target=">= 3x node",
            check=lambda p, q, r: p >= 3 * r,
            digits=0,
        ),
        row(
            "deliveries_per_cpu_second",
            "deliveries per CPU second of the server",
            "/s",
            "throughput",
            "deliveries_per_cpu_second",
            digits=0,
        ),
        row(
            "latency_small_p50_ms",
            f"latency p50, {small} clients, {rate:.0f} msg/s",
            "ms",
            "latency_small",
            "p50_ms",
            target="<= 1.2x node",
            check=lambda p, q, r: p <= 1.2 * r,
            digits=2,
        ),
        row(
            "latency_small_p99_ms",
            f"latency p99, {small} clients, {rate:.0f} msg/s",
            "ms",
            "latency_small",
            "p99_ms",
            digits=2,
        ),
        row(
            "latency_p50_ms",
            f"latency p50, {n} clients, {rate:.0f} msg/s",
            "ms",
            "latency",
            "p50_ms",
            target="<= 1.2x node",
            check=lambda p, q, r: p <= 1.2 * r,
            digits=2,
        ),
        row(
            "latency_p99_ms",
            f"latency p99, {n} clients, {rate:.0f} msg/s",
            "ms",
            "latency",
            "p99_ms",
            target="<= 1.2x node",
            check=lambda p, q, r: p <= 1.2 * r,
            digits=2,
        ),
        row(
            "latency_light_p50_ms",
            f"latency p50, {n} clients, {plan.light_rate:.0f} msg/s",
            "ms",
            "latency_light",
            "p50_ms",
            digits=2,
        ),
        row(
            "latency_light_p99_ms",
            f"latency p99, {n} clients, {plan.light_rate:.0f} msg/s",
            "ms",
            "latency_light",
            "p99_ms",
            digits=2,
        ),
        row(
            "connect_seconds",
            f"first {n} joins (join + welcome), {CONNECT_CONCURRENCY} in flight",
            "s",
            "connect",
            "seconds",
            target="<= 1.2x naive",
            check=lambda p, q, r: p <= 1.2 * q,
            digits=2,
        ),
        row(
            "connections_per_second_more",
            f"joins/s from {n} to {many} online",
            "/s",
            "connect_more",
            "per_second",
            target=">= naive",
            check=lambda p, q, r: p >= q,
            digits=0,
        ),
        row("rss_idle_kib", "RSS idle, no clients", "KiB", "rss_kib", 0, digits=0),
        row(
            "rss_per_connection_kib_n",
            f"RSS per idle connection, {n} clients",
            "KiB",
            "rss_per_connection_kib",
            n,
        ),
        row(
            "rss_per_connection_kib_many",
            f"RSS per idle connection, {many} clients",
            "KiB",
            "rss_per_connection_kib",
            many,
            target="<= 10 KiB",
            check=lambda p, q, r: p <= 10.0,
        ),
        row(
            "idle_cpu_seconds",
            f"CPU time, {plan.idle_clients} idle clients, {plan.idle_seconds:.0f} s",
            "s",
            "idle",
            "cpu_seconds",
            digits=3,
        ),
        row(
            "idle_wakeups",
            f"context switches in {plan.idle_seconds:.0f} s, {plan.idle_clients} idle clients",
            "",
            "idle",
            "switches",
            target="<= 10",
            check=lambda p, q, r: p <= 10,
            digits=0,
        ),
        row(
            "growth_rss_kib",
            f"RSS with {growth} idle clients",
            "KiB",
            "growth",
            "rss_kib",
            digits=0,
        ),
        row(
            "growth_rejoin_seconds",
            f"all {growth} rejoin after a restart",
            "s",
            "growth",
            "rejoin_s",
            digits=2,
        ),
        row(
            "ready_seconds",
            "start to READY=1 (peers: first accept), median",
            "s",
            "ready_median_s",
            target="<= 1 s",
            check=lambda p, q, r: p <= 1.0,
            digits=3,
        ),
        row(
            "ready_cpu_seconds",
            "CPU time to READY=1 (peers: first accept), median",
            "s",
            "ready_cpu_median_s",
            digits=3,
        ),
        row(
            "generator_cpu_saturated",
            "load generator CPU share while saturating, max",
            "",
            "throughput",
            "generator_cpu_share",
            digits=2,
        ),
        row(
            "server_cpu_saturated",
            "server CPU share while saturating, median",
            "",
            "throughput",
            "server_cpu_share",
            digits=2,
        ),
    ]
    return rows


async def run(
    plan: Plan, kinds: list[Kind], workdir: Path, phases: set[str]
) -> dict[str, dict[str, Any]]:
    """The chosen phases for every server; the results by server."""
    results: dict[str, dict[str, Any]] = {kind: {} for kind in kinds}
    if "connections" in phases:
        for kind in kinds:
            connections = await connections_phase(kind, workdir / f"{kind}-connections", plan)
            results[kind].update(connections)
    if "joins" in phases:
        joins = await joins_phase(kinds, workdir / "joins", plan)
        for kind in kinds:
            done = results[kind]
            rounds = joins[kind]
            if "connect" in done:  # the connections phase's sample counts too
                rounds.append((done["connect"]["seconds"], done["connect_more"]["per_second"]))
            first = statistics.median(seconds for seconds, _ in rounds)
            rate = statistics.median(rate for _, rate in rounds)
            done["join_rounds"] = rounds
            done["connect"] = {
                "clients": plan.clients,
                "seconds": first,
                "per_second": plan.clients / first,
            }
            done["connect_more"] = {
                "from": plan.clients,
                "to": plan.many_clients,
                "per_second": rate,
            }
    if "traffic" in phases:
        traffic = await traffic_phase(kinds, workdir / "traffic", plan)
        for kind in kinds:
            results[kind].update(traffic[kind])
    if "small" in phases:
        small = await small_phase(kinds, workdir / "small", plan)
        for kind in kinds:
            results[kind].update(small[kind])
    if "growth" in phases:
        for kind in kinds:
            growth = await growth_phase(kind, workdir / f"{kind}-growth", plan)
            results[kind]["growth"] = growth
    if "starts" not in phases:
        return results
    for kind in kinds:
        starts = await start_phase(kind, workdir / f"{kind}-starts", plan.extra_starts)
        done = results[kind]
        ready = [done[key] for key in ("ready_s", "traffic_ready_s") if key in done]
        ready += [ready_s for ready_s, _ in starts]
        cpu = [done[key] for key in ("ready_cpu_s", "traffic_ready_cpu_s") if key in done]
        cpu += [cpu_s for _, cpu_s in starts]
        done["ready_samples_s"] = ready
        done["ready_median_s"] = statistics.median(ready)
        done["ready_cpu_samples_s"] = cpu
        done["ready_cpu_median_s"] = statistics.median(cpu)
        log(f"{kind}: start to ready, median of {len(ready)}: {statistics.median(ready):.3f} s")
    return results


def warnings(results: dict[str, dict[str, Any]]) -> list[str]:
    """What a reader must know before trusting the table."""
    notes = []
    for kind, result in results.items():
        rounds = result.get("throughput", {}).get("rounds", [])
        if any(run["generator"]["cpu_share"] > 0.9 for run in rounds):
            notes.append(
                f"the load generator was near a full core against {kind}: its figure is a floor"
            )
        waiting = [run["server"]["waiting_share"] for run in rounds]
        if waiting and max(waiting) > 0.2:
            notes.append(
                f"{kind} waited for core 0 up to {max(waiting):.0%} of a saturation round:"
                " other work shared its core"
            )
        if result.get("traffic_closed_by_server"):
            closed = result["traffic_closed_by_server"]
            notes.append(f"{kind} closed {closed} clients during the traffic phase")
        if any(not run["drained"] for run in rounds):
            notes.append(
                f"{kind} had not delivered every message {DRAIN_TIMEOUT:.0f} s after a round"
            )
        for key in ("latency", "latency_light"):
            latency = result.get(key)
            if latency and latency["deliveries"] < latency["expected_deliveries"]:
                notes.append(
                    f"{kind} at {latency['rate']:.0f} msg/s delivered {latency['deliveries']}"
                    f" of {latency['expected_deliveries']} in time: it was overloaded"
                )
    load = os.getloadavg()[0]
    if load > (os.cpu_count() or 1):
        notes.append(f"load average {load:.1f}: other work shared the cores, use the ratios")
    return notes


def pin() -> bool:
    """Pin this process (the load generator) to core 1, leaving core 0 to the server."""
    if (os.cpu_count() or 1) < 2:
        log("one core only: nothing pinned, figures include contention")
        return False
    os.sched_setaffinity(0, {GENERATOR_CPU})
    return True


def raise_file_limit(needed: int) -> None:
    """Raise the open-files limit for us and (inherited) the servers."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = needed if hard == resource.RLIM_INFINITY else min(hard, max(needed, soft))
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < needed:
        log(f"open-files limit is {want}; {needed} wanted, connections may fail")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="a short run for development (about a minute)"
    )
    parser.add_argument(
        "--only", choices=["pichat", "naive", "node"], help="measure one server (no ratios)"
    )
    parser.add_argument(
        "--window", type=int, help="messages in flight while saturating (default 200)"
    )
    parser.add_argument(
        "--phases",
        default="connections,joins,traffic,small,growth,starts,cluster",
        help="comma-separated subset of connections,joins,traffic,small,growth,starts,cluster "
        "(default: all)",
    )
    parser.add_argument("--json", type=Path, default=RESULTS, help="where to write the results")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, write the JSON file."""
    args = parse_args(argv)
    plan = QUICK if args.quick else Plan()
    if args.window:
        plan = Plan(**{**plan.__dict__, "window": args.window})
    kinds: list[Kind] = ["naive", "node", "pichat"]
    if args.only:
        kinds = [args.only]
    if "node" in kinds:
        why = servers.prepare_node()
        if why is not None:
            log(f"no Node.js peer: {why}")
            kinds.remove("node")
    if "pichat" in kinds and find_spec("pichat.cli") is None:
        log("pichat.cli is not there yet: measuring the naive server only")
        kinds.remove("pichat")
    pinned = pin()
    raise_file_limit(max(plan.many_clients, plan.growth_clients) + 1000)
    began = datetime.datetime.now(datetime.UTC)
    with tempfile.TemporaryDirectory(prefix="pichat-bench-") as tmp:
        results = asyncio.run(run(plan, kinds, Path(tmp), set(args.phases.split(","))))
    rows = metrics(results, plan)
    print()
    print(render(rows))
    for note in warnings(results):
        print(f"note: {note}")
    document = {
        "started": began.isoformat(timespec="seconds"),
        "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "plan": plan.__dict__,
        "machine": {
            "cpus": os.cpu_count(),
            "pinned": pinned,
            "python": platform.python_version(),
            "kernel": platform.release(),
            "load_average": os.getloadavg(),
        },
        "metrics": [metric.as_dict() for metric in rows],
        "results": results,
    }
    write_json(args.json, document)
    print(f"\nresults written to {args.json}")
    if "cluster" in args.phases.split(",") and "pichat" in kinds:
        from . import cluster  # two daemons sharing one Redis (bench/cluster.py)

        with tempfile.TemporaryDirectory(prefix="pichat-bench-cluster-") as tmp:
            cluster.report(Path(tmp))
    return 0
