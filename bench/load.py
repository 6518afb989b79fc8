"""The load phases: connecting clients, saturating senders, paced latency probes, idling.

Every loop here is bounded in count and in time and stops by itself: a phase sends a
fixed number of messages or runs for a fixed number of seconds, and every wait has a
timeout. All traffic goes to the server on 127.0.0.1, from source addresses on
127.0.0.0/8.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

from .proc import Usage, demand, self_usage, usage
from .wsclient import BenchClient, Counters, open_client

__all__ = [
    "Connected",
    "Generator",
    "Latency",
    "Throughput",
    "quiet",
]

#: Source addresses the clients connect from, round robin: each has its own
#: ephemeral port range, so thousands of connections never run short of ports.
SOURCES = tuple(f"127.0.0.{n}" for n in range(2, 18))
#: How many handshakes are in flight at once while connecting.
CONNECT_CONCURRENCY = 64
#: The text of a saturating sender's message: a short chat line.
LOAD_TEXT = "benchmark load: the quick brown fox jumps over the lazy dog"
#: How long after its last message a latency round waits for deliveries to sample.
LATE = 10.0
#: How long the backlog of a saturation run may take to reach every client.
DRAIN_TIMEOUT = 120.0
TIMESTAMP = re.compile(rb'"text": ?"L(\d+):(\d+):(\d+)')


@dataclass(frozen=True)
class Connected:
    """How a batch of connections went."""

    count: int
    seconds: float

    @property
    def rate(self) -> float:
        """Connections (each joined and welcomed) per second."""
        return self.count / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class Throughput:
    """A saturation run: deliveries received by all clients in the measured window."""

    clients: int
    senders: int
    window: int
    seconds: float
    messages_sent: int
    deliveries: int
    server: Usage
    generator: Usage
    #: Whether every client got every message before the drain timeout.
    drained: bool

    @property
    def rate(self) -> float:
        """Deliveries per second."""
        return self.deliveries / self.seconds


@dataclass(frozen=True)
class Latency:
    """A paced run: delivery latency of every delivery of the measured messages."""

    clients: int
    rate: float
    messages: int
    expected: int
    samples: list[int]
    server: Usage
    generator: Usage

    def percentile(self, fraction: float) -> float:
        """The given percentile of the delivery latency, in milliseconds."""
        if not self.samples:
            return float("nan")
        ordered = sorted(self.samples)
        index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
        return ordered[index] / 1e6


async def quiet(pid: int, threshold: float = 0.05, timeout: float = 30.0) -> float:
    """Wait until the server's demand for a CPU over half a second falls under ``threshold``.

    Connecting thousands of clients leaves work behind (presence frames to every
    member, garbage); measuring memory or the next phase before it is done would
    blame it on the wrong thing. Demand counts time spent waiting for the core too,
    so a server starved by neighbours is not mistaken for an idle one. Returns the
    seconds waited.
    """
    began = time.monotonic()
    before = demand(pid)
    while time.monotonic() - began < timeout:
        await asyncio.sleep(0.5)
        after = demand(pid)
        if (after - before) / 0.5 < threshold:
            break
        before = after
    return time.monotonic() - began


class Generator:
    """The clients of one server, and the load they put on it.

    Args:
        port: the server's port on 127.0.0.1.
    """

    def __init__(self, port: int) -> None:
        self.host = "127.0.0.1"
        self.port = port
        self.counters = Counters()
        self.clients: list[BenchClient] = []
        self._names = itertools.count(1)
        self._sources = itertools.cycle(SOURCES)
        self._probes = itertools.count(1)

    async def connect(self, count: int, timeout: float | None = None) -> Connected:
        """Open ``count`` more clients, each joined and welcomed, a bounded number at once.

        The default timeout allows 4 joins per second and a minute more: joins into
        a full room cost the server O(members) each, and the core may be shared.
        """
        if timeout is None:
            timeout = 60.0 + count / 4
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def one() -> BenchClient:
            async with gate:
                name = f"c{next(self._names):05d}"
                return await open_client(
                    self.counters, self.host, self.port, next(self._sources), name
                )

        began = time.monotonic()
        async with asyncio.timeout(timeout):
            tasks = [asyncio.ensure_future(one()) for _ in range(count)]
            try:
                clients = await asyncio.gather(*tasks)
            except BaseException:
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    if task.done() and not task.cancelled() and task.exception() is None:
                        task.result().abort()
                raise
        seconds = time.monotonic() - began
        self.clients.extend(clients)
        return Connected(count, seconds)

    def close_all(self) -> None:
        """Close every client with a closing handshake (1000)."""
        for client in self.clients:
            client.close()
        self.clients.clear()

    def abort_all(self) -> None:
        """Drop every client at once."""
        for client in self.clients:
            client.abort()
        self.clients.clear()

    async def saturate(
        self,
        server_pid: int,
        senders: int,
        window: int,
        warmup: float,
        seconds: float,
    ) -> Throughput:
        """Keep ``window`` messages in flight from ``senders`` clients; count deliveries.

        Flow control is closed-loop: a sender sends again when a message comes back
        to it (every sender is a member and receives every message), so the server
        runs flat out without an unbounded queue building up anywhere. Deliveries
        are the text frames all clients receive during the measured window.
        """
        active = self.clients[:senders]
        base = {id(client): client.texts for client in active}
        start = [client.texts for client in self.clients]
        state = {"sent": 0, "running": True}
        say = f'{{"type":"say","text":"{LOAD_TEXT}"}}'.encode()

        def on_count(client: BenchClient) -> None:
            if not state["running"]:
                return
            received = client.texts - base[id(client)]
            while state["sent"] - received < window:
                client.send_text(say)
                state["sent"] += 1

        for client in active:
            client.on_count = on_count
        try:
            for client in active:
                on_count(client)
            await asyncio.sleep(warmup)
            texts, sent = self.counters.texts, state["sent"]
            server, generator = usage(server_pid), self_usage()
            await asyncio.sleep(seconds)
            texts = self.counters.texts - texts
            sent = state["sent"] - sent
            server = usage(server_pid).since(server)
            generator = self_usage().since(generator)
        finally:
            state["running"] = False
            for client in active:
                client.on_count = None
        drained = await self.drain(start, state["sent"], timeout=DRAIN_TIMEOUT)
        return Throughput(
            len(self.clients), senders, window, server.wall, sent, texts, server, generator, drained
        )

    async def drain(self, start: list[int], sent: int, timeout: float) -> bool:
        """Wait until every open client has received ``sent`` more messages; False on timeout.

        The next phase must not start behind a backlog: a server may still hold
        megabytes of queued frames when its senders stop.
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(
                client.texts - before >= sent or client.closed_by_server or client.lost.done()
                for client, before in zip(self.clients, start, strict=True)
            ):
                return True
            await asyncio.sleep(0.1)
        return False

    async def probe_latency(
        self,
        server_pid: int,
        senders: int,
        rate: float,
        warmup: float,
        seconds: float,
    ) -> Latency:
        """Send ``rate`` messages per second in total, round robin over ``senders``.

        Each message carries its send time (``time.monotonic_ns()``, same machine);
        every client notes the receive time of each chunk and the difference for
        each message in it. Only messages of this probe after its warm-up count.
        """
        loop = asyncio.get_running_loop()
        active = self.clients[:senders]
        samples: list[int] = []
        total = round(rate * (warmup + seconds))
        skipped = round(rate * warmup)
        # Each probe tags its messages: a late delivery from an earlier one is not ours.
        number = next(self._probes)
        probe = str(number).encode()
        finished = loop.create_future()

        def on_text(client: BenchClient, payload: bytes, now: int) -> None:
            found = TIMESTAMP.search(payload)
            if found is not None and found[1] == probe and int(found[2]) >= skipped:
                samples.append(now - int(found[3]))

        def send(index: int) -> None:
            active[index % len(active)].send_text(
                f'{{"type":"say","text":"L{number}:{index}:{time.monotonic_ns()}"}}'.encode()
            )
            if index + 1 == total and not finished.done():
                finished.set_result(None)

        counts = [client.texts for client in self.clients]
        for client in self.clients:
            client.on_text = on_text
        try:
            start = loop.time()
            handles = [loop.call_at(start + i / rate, send, i) for i in range(total)]
            await asyncio.sleep(warmup)
            server, generator = usage(server_pid), self_usage()
            try:
                async with asyncio.timeout(seconds + 30):
                    await finished
            finally:
                for handle in handles:
                    handle.cancel()
            expected = (total - skipped) * len(self.clients)
            deadline = time.monotonic() + LATE
            while len(samples) < expected and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            server = usage(server_pid).since(server)
            generator = self_usage().since(generator)
        finally:
            for client in self.clients:
                client.on_text = None
        # Deliveries later than this are not sampled (the round reports them as
        # missing), but the next round must not start behind them.
        await self.drain(counts, total, timeout=DRAIN_TIMEOUT)
        return Latency(
            len(self.clients), rate, total - skipped, expected, samples, server, generator
        )


def total_texts(clients: Sequence[BenchClient]) -> int:
    """Text frames received by these clients so far."""
    return sum(client.texts for client in clients)
