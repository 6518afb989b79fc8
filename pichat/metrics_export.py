"""The Prometheus side of ``/metrics``, imported on the first scrape (see :mod:`.metrics`)."""

from __future__ import annotations

import collections
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from . import __version__
from .metrics import COMMIT_BUCKETS, REFUSAL_REASONS, RESUME_OUTCOMES

if TYPE_CHECKING:
    from .metrics import Metrics
    from .server import ChatServer

__all__ = ["Exporter"]


class Exporter:
    """The registry of one daemon: the library's process metrics and pichat's own."""

    def __init__(self, server: ChatServer, metrics: Metrics) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # The library's process metrics, as its default registry has them.
        for standard in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(standard)
        self.registry.register(_State(server, metrics))
        #: The media type of :meth:`render`'s text.
        self.content_type = CONTENT_TYPE_LATEST

    def render(self) -> bytes:
        """The text exposition."""
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
        buckets, total = self.metrics.commits()
        cumulative, running = [], 0
        for bound, count in zip((*COMMIT_BUCKETS, float("inf")), buckets, strict=True):
            running += count
            cumulative.append(("+Inf" if bound == float("inf") else repr(bound), running))
        yield HistogramMetricFamily(
            "pichat_store_commit_seconds",
            "Time of one history write transaction (a group of messages).",
            buckets=cumulative,
            sum_value=total,
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
