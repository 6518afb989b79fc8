"""``GET /metrics``: the daemon's state and counters in the Prometheus text format.

Nothing here runs per message delivered. The engine, the outbox, the admission
and the store keep plain counts of what they already do once per message or
event (``Chat.stats``, ``Outbox.slow_dropped``, ``ChatServer.refused``,
``Store.failures``); a scrape reads them, and the gauges (connections, online,
history), at that moment. Only the store's commit time is observed as it
happens, once per transaction, from the store's own thread.

Each daemon has its own registry (not prometheus_client's global one), so two
daemons in one test process do not share counters.
"""

from __future__ import annotations

import collections
import ipaddress
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from . import __version__

if TYPE_CHECKING:
    from .server import ChatServer
    from .store import Store

__all__ = [
    "CONTENT_TYPE",
    "REFUSAL_REASONS",
    "RESUME_OUTCOMES",
    "Metrics",
    "address_allowed",
    "parse_networks",
]

#: What ``/metrics`` answers with (the library's text format).
CONTENT_TYPE = CONTENT_TYPE_LATEST
#: ``pichat_handshakes_refused_total{reason}``: each is reported, 0 until it happens.
REFUSAL_REASONS = ("host", "origin", "total", "address", "bad_request")
#: ``pichat_resumes_total{outcome}``.
RESUME_OUTCOMES = ("resumed", "gap", "epoch_change")
#: Seconds; an SD card commits in a few ms, a failing one in seconds.
COMMIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """``metrics_allowed`` (validated by the settings) as networks."""
    return tuple(ipaddress.ip_network(value, strict=False) for value in values)


def address_allowed(address: str, networks: Iterable[Network]) -> bool:
    """Whether ``address`` (as websockets reports it) is in one of ``networks``."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False  # a Unix socket or no address: not a network we know
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # a dual-stack socket (systemd's) reports IPv4 clients so
    return any(ip in network for network in networks)


class Metrics:
    """The metrics of one daemon and who may read them.

    Args:
        server: whose state is reported.
        allowed: addresses and networks that may scrape (``metrics_allowed``).
    """

    def __init__(self, server: ChatServer, allowed: Iterable[str]) -> None:
        self.store: Store | None = None
        self.allowed = parse_networks(allowed)
        self.registry = CollectorRegistry(auto_describe=True)
        # The library's process metrics, as its default registry has them.
        for standard in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(standard)
        self.registry.register(_State(server, self))
        self.commit_seconds = Histogram(
            "pichat_store_commit_seconds",
            "Time of one history write transaction (a group of messages).",
            buckets=COMMIT_BUCKETS,
            registry=self.registry,
        )

    def configure(self, allowed: Iterable[str]) -> None:
        """Take a new ``metrics_allowed`` (at reload)."""
        self.allowed = parse_networks(allowed)

    def watch(self, store: Store) -> None:
        """Report this store's commit times and failures."""
        self.store = store
        store.commit_observer = self.commit_seconds.observe

    def allows(self, address: str) -> bool:
        """Whether a client at ``address`` (as websockets reports it) may scrape."""
        return address_allowed(address, self.allowed)

    def render(self) -> bytes:
        """The text exposition of every metric."""
        return generate_latest(self.registry)


class _State(Collector):
    """Reads the daemon's counts and gauges at scrape time."""

    def __init__(self, server: ChatServer, metrics: Metrics) -> None:
        self.server = server
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        server = self.server
        chat = server.chat
        stats = chat.stats
        info = GaugeMetricFamily("pichat_build_info", "pichat's version.", labels=["version"])
        info.add_metric([__version__], 1)
        yield info

        by_protocol = collections.Counter(
            client.dialect.subprotocol for client in server.outbox.clients
        )
        connections = GaugeMetricFamily(
            "pichat_connections", "Open WebSocket connections.", labels=["subprotocol"]
        )
        for subprotocol in sorted(set(by_protocol) | {"pichat.v1", "echo-protocol"}):
            connections.add_metric([subprotocol], by_protocol[subprotocol])
        yield connections

        online = GaugeMetricFamily("pichat_online", "Members joined, per room.", labels=["room"])
        history = GaugeMetricFamily(
            "pichat_history_messages", "Messages retained, per room.", labels=["room"]
        )
        messages = CounterMetricFamily(
            "pichat_messages", "Messages stored since start, per room.", labels=["room"]
        )
        for name, room in sorted(chat.rooms.items()):
            online.add_metric([name], len(room.members))
            history.add_metric([name], len(room.history))
            messages.add_metric([name], stats.messages[name])
        yield online
        yield history
        yield messages

        yield _counter(
            "pichat_errors", "Error frames sent to clients, by code.", "code", stats.errors
        )
        yield _counter(
            "pichat_handshakes_refused",
            "WebSocket handshakes refused, by reason.",
            "reason",
            server.refused,
            REFUSAL_REASONS,
        )
        yield _counter(
            "pichat_resumes",
            "Joins that resumed from a cursor, by outcome.",
            "outcome",
            stats.resumes,
            RESUME_OUTCOMES,
        )
        yield CounterMetricFamily(
            "pichat_slow_clients_dropped",
            "Clients dropped for not reading (send queue full).",
            value=server.outbox.slow_dropped,
        )
        yield CounterMetricFamily(
            "pichat_ping_timeouts",
            "Clients closed for not answering a ping.",
            value=server.outbox.ping_timeouts,
        )
        yield GaugeMetricFamily(
            "pichat_history_up",
            "1 while the history can be written (SQLite, or Redis when rooms are shared).",
            value=1 if server.history.healthy else 0,
        )
        store = self.metrics.store
        yield CounterMetricFamily(
            "pichat_store_failures",
            "History write transactions that failed (disk full, database gone).",
            value=store.failures if store is not None else 0,
        )


def _counter(
    name: str,
    documentation: str,
    label: str,
    counts: collections.Counter[str],
    always: Iterable[str] = (),
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=[label])
    for key in sorted(set(counts) | set(always)):
        family.add_metric([key], counts[key])
    return family
