"""``GET /metrics``: what it counts, against a real in-process daemon, and who may read it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

import pichat
from pichat.metrics import address_allowed, parse_networks
from pichat.settings import ConfigError, load
from tests.conftest import join, open_client, recv, recv_type, say
from tests.daemon import TIMEOUT, modules_after_import
from tests.harness import Running, settings_for
from tests.http import raw_get
from tests.test_review import eventually, server_client

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(daemon: Running) -> Samples:
    """Every sample of ``/metrics`` by name and labels."""
    status, headers, body = await raw_get(daemon, "/metrics")
    assert status == 200, body
    assert headers["content-type"].startswith("text/plain; version=")
    samples: Samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value (0 when absent, as Prometheus reads a missing counter)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_count_messages_not_deliveries(daemon_factory: Any) -> None:
    """Three messages to two listeners are three messages; gauges show who is where."""
    daemon = await daemon_factory({"rate_messages": 100})
    alice, _ = await join(daemon, "alice")
    legacy = await open_client(daemon, "echo-protocol")
    await recv(legacy)  # its history
    for index in range(3):
        await say(alice, f"hello {index}")
        await recv_type(alice, "message")
        await recv(legacy)
    await alice.send("not json")
    assert (await recv_type(alice, "error"))["code"] == "bad_json"
    samples = await scrape(daemon)
    assert value(samples, "pichat_build_info", version=pichat.__version__) == 1
    assert value(samples, "pichat_messages_total", room="lobby") == 3
    assert value(samples, "pichat_history_messages", room="lobby") == 3
    assert value(samples, "pichat_online", room="lobby") == 1
    assert value(samples, "pichat_connections", subprotocol="pichat.v1") == 1
    assert value(samples, "pichat_connections", subprotocol="echo-protocol") == 1
    assert value(samples, "pichat_errors_total", code="bad_json") == 1
    assert value(samples, "pichat_store_commit_seconds_count") >= 1
    assert value(samples, "pichat_store_failures_total") == 0
    assert value(samples, "pichat_history_up") == 1
    assert value(samples, "process_open_fds") > 0  # the library's process metrics
    await alice.close()
    await legacy.close()


async def test_metrics_count_refusals_and_resumes(daemon_factory: Any) -> None:
    """Refused handshakes by reason; joins with a cursor by outcome."""
    daemon = await daemon_factory({"max_connections_per_ip": 2})
    with pytest.raises(InvalidStatus):
        await connect(daemon.ws_url, origin="https://evil.example", open_timeout=TIMEOUT)  # type: ignore[arg-type]
    first, welcome = await join(daemon, "first")
    await say(first, "one")
    await recv_type(first, "message")
    epoch = welcome["epoch"]
    second, resumed = await join(daemon, "second", since=0, epoch=epoch)
    assert resumed["resumed"] is True
    with pytest.raises(InvalidStatus):
        await open_client(daemon)  # a third from this address
    await second.close()
    await eventually(lambda: daemon.server.reserved == 1, "a slot released")
    other, changed = await join(daemon, "other", since=1, epoch="another-history")
    assert changed["gap"] is True
    samples = await scrape(daemon)
    name = "pichat_handshakes_refused_total"
    assert value(samples, name, reason="origin") == 1
    assert value(samples, name, reason="address") == 1
    assert value(samples, name, reason="total") == 0
    assert value(samples, "pichat_resumes_total", outcome="resumed") == 1
    assert value(samples, "pichat_resumes_total", outcome="epoch_change") == 1
    assert value(samples, "pichat_resumes_total", outcome="gap") == 0
    await first.close()
    await other.close()


async def test_metrics_count_dropped_and_timed_out_clients(daemon_factory: Any) -> None:
    """A client that stops answering pings and one dropped as too slow are each counted."""
    daemon = await daemon_factory({"ping_interval": 0.2})
    quiet, _ = await join(daemon, "quiet")
    quiet.transport.pause_reading()  # reads no ping, so sends no pong
    await eventually(
        lambda: all(c.name != "quiet" for c in daemon.server.outbox.clients), "quiet closed"
    )
    slow, _ = await join(daemon, "slow")
    daemon.server.outbox.drop(server_client(daemon, "slow"), "too slow: send queue full")
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(slow.recv(), TIMEOUT)
    samples = await scrape(daemon)
    assert value(samples, "pichat_ping_timeouts_total") == 1
    assert value(samples, "pichat_slow_clients_dropped_total") == 1
    quiet.transport.abort()


async def test_metrics_count_store_failures(daemon_factory: Any) -> None:
    """A database that refuses writes shows as failed transactions and an unhealthy history.

    The message itself is journaled and shown; the database gets it later.
    """
    daemon = await daemon_factory()
    store = daemon.server.history
    ws, _ = await join(daemon, "alice")
    await store._call(  # type: ignore[attr-defined]
        lambda: store._db.execute("PRAGMA query_only = 1")  # type: ignore[attr-defined]
    )
    await say(ws, "kept")
    assert (await recv_type(ws, "message"))["text"] == "kept"
    await store.messages_after("lobby", 0, 1)  # the thread has tried it (maybe twice:
    samples = await scrape(daemon)  # a read after a failed apply tries it again first)
    assert value(samples, "pichat_store_failures_total") >= 1
    assert value(samples, "pichat_history_up") == 0
    assert value(samples, "pichat_messages_total", room="lobby") == 1
    await ws.close()


async def test_metrics_refused_outside_metrics_allowed(daemon_factory: Any, tmp_path: Path) -> None:
    """An address outside metrics_allowed gets 403; a reload that allows it gets the metrics."""
    daemon = await daemon_factory({"metrics_allowed": ["10.0.0.0/8", "192.0.2.7"]})
    status, _, body = await raw_get(daemon, "/metrics")
    assert status == 403 and b"pichat_" not in body
    status, _, _ = await raw_get(daemon, "/healthz")
    assert status == 200  # the rest of the site is unaffected
    await daemon.server.reload(settings_for(tmp_path, {"metrics_allowed": ["127.0.0.1"]}))
    status, headers, body = await raw_get(daemon, "/metrics", method="HEAD")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0
    status, _, _ = await raw_get(daemon, "/metrics", method="POST")
    assert status == 405


def test_metrics_allowed_matches_addresses_as_websockets_reports_them() -> None:
    """CIDRs and bare addresses match; an IPv4-mapped IPv6 address counts as IPv4."""
    networks = parse_networks(["127.0.0.0/8", "::1/128", "2001:db8::/32"])
    for address in ("127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1", "2001:db8::5"):
        assert address_allowed(address, networks), address
    for address in ("10.0.0.1", "::2", "::ffff:10.0.0.1", "", "fe80::1%eth0", "not an ip"):
        assert not address_allowed(address, networks), address


def test_metrics_allowed_names_a_bad_entry(tmp_path: Path) -> None:
    """A value that is no address or network is a config error naming the key."""
    config = tmp_path / "pichat.toml"
    config.write_text('metrics_allowed = ["10.0.0.0/8", "lan"]\n')
    with pytest.raises(ConfigError) as caught:
        load(config)
    assert any(p.startswith("metrics_allowed: ") and "'lan'" in p for p in caught.value.problems)
    assert load(None).metrics_allowed == ["127.0.0.0/8", "::1/128"]


async def test_metrics_behind_a_trusted_proxy_judge_the_forwarded_client(
    daemon_factory: Any,
) -> None:
    """A proxy on loopback must not open /metrics to everyone it forwards.

    nginx on the Pi connects from 127.0.0.1, inside the default metrics_allowed;
    the client it names in X-Forwarded-For is the one to judge.
    """
    daemon = await daemon_factory({"trusted_proxies": ["127.0.0.1"]})
    outsider = {"X-Forwarded-For": "203.0.113.9"}
    status, _, body = await raw_get(daemon, "/metrics", headers=outsider)
    assert status == 403 and b"pichat_" not in body
    status, _, body = await raw_get(daemon, "/metrics", headers={"X-Forwarded-For": "127.0.0.1"})
    assert status == 200 and b"pichat_build_info" in body
    # The proxy itself (no header) is still the client.
    status, _, _ = await raw_get(daemon, "/metrics")
    assert status == 200


def test_prometheus_client_is_imported_on_the_first_scrape_only() -> None:
    """Starting the daemon's modules does not load prometheus_client (memory of an idle Pi)."""
    loaded = modules_after_import("pichat.app", "pichat.server", "pichat.cli")
    assert "pichat.metrics" in loaded
    assert "prometheus_client" not in loaded
