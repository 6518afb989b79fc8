"""``GET /metrics``: the daemon's state and counters in the Prometheus text format.

Nothing here runs per message delivered. The engine, the outbox, the admission
and the store keep plain counts of what they already do once per message or
event (``Chat.stats``, ``Outbox.slow_dropped``, ``ChatServer.refused``,
``Store.failures``); a scrape reads them, and the gauges (connections, online,
history), at that moment. Only the store's commit time is observed as it
happens, once per transaction, from the store's own thread.

Each daemon has its own registry (not prometheus_client's global one), so two
daemons in one test process do not share counters.

prometheus_client is imported on the first scrape (:mod:`.metrics_export`), not
at start: it is a sixth of an idle daemon's memory, and most Pis are never
scraped. Until then the commit times are counted here in plain buckets.
"""

from __future__ import annotations

import bisect
import ipaddress
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .metrics_export import Exporter
    from .server import ChatServer
    from .store import Store

__all__ = [
    "REFUSAL_REASONS",
    "RESUME_OUTCOMES",
    "Metrics",
    "address_allowed",
    "parse_networks",
]

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
        self.server = server
        self.store: Store | None = None
        self.allowed = parse_networks(allowed)
        #: Commit times so far: a count per bucket of COMMIT_BUCKETS (and +Inf), the sum.
        self.commit_buckets = [0] * (len(COMMIT_BUCKETS) + 1)
        self.commit_sum = 0.0
        self._lock = threading.Lock()  # observed from the loop or the store's thread
        self._exporter: Exporter | None = None

    def configure(self, allowed: Iterable[str]) -> None:
        """Take a new ``metrics_allowed`` (at reload)."""
        self.allowed = parse_networks(allowed)

    def watch(self, store: Store) -> None:
        """Report this store's commit times and failures."""
        self.store = store
        store.commit_observer = self.observe_commit

    def observe_commit(self, seconds: float) -> None:
        """One write transaction took ``seconds`` (called from the thread that committed)."""
        index = bisect.bisect_left(COMMIT_BUCKETS, seconds)
        with self._lock:
            self.commit_buckets[index] += 1
            self.commit_sum += seconds

    def commits(self) -> tuple[list[int], float]:
        """The commit buckets and sum, read together."""
        with self._lock:
            return list(self.commit_buckets), self.commit_sum

    def allows(self, address: str) -> bool:
        """Whether a client at ``address`` (as websockets reports it) may scrape."""
        return address_allowed(address, self.allowed)

    def render(self) -> bytes:
        """The text exposition of every metric (prometheus_client loads on the first)."""
        if self._exporter is None:
            from .metrics_export import Exporter

            self._exporter = Exporter(self.server, self)
        return self._exporter.render()

    @property
    def content_type(self) -> str:
        """What the rendered text is (the library's ``CONTENT_TYPE_LATEST``), after render."""
        assert self._exporter is not None, "render first"
        return self._exporter.content_type
