"""TLS on the same port: https and wss, HSTS, certificate reload, bad files, plain HTTP to it."""

from __future__ import annotations

import asyncio
import json
import signal
import ssl
import warnings
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from pichat.app import Daemon
from pichat.settings import ConfigError, load
from pichat.systemd import SystemdEnvironment
from tests.conftest import recv_type
from tests.daemon import TIMEOUT
from tests.daemon import Daemon as Process
from tests.harness import running, settings_for
from tests.http import raw_get
from tests.tls import TestCA


async def https_get(port: int, context: ssl.SSLContext, path: str = "/") -> tuple[str, str]:
    """GET over TLS: the status line with headers, and the peer certificate's CN."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, ssl=context), TIMEOUT
    )
    peer = writer.get_extra_info("peercert")
    subject = dict(item[0] for item in peer["subject"])["commonName"]
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    writer.close()
    return head.decode(), subject


async def wss_join(port: int, context: ssl.SSLContext, name: str) -> tuple[Any, Any]:
    """A verified wss:// client that joined."""
    ws = await connect(
        f"wss://127.0.0.1:{port}/",
        ssl=context,
        subprotocols=["pichat.v1"],
        open_timeout=TIMEOUT,  # type: ignore[list-item]
    )
    await ws.send(json.dumps({"type": "join", "name": name}))
    return ws, await recv_type(ws, "welcome")


async def test_https_and_wss_on_one_port_with_hsts(tmp_path: Path) -> None:
    """The page over https with HSTS, chat over wss, plain HTTP to the port fails cleanly."""
    ca = TestCA(tmp_path / "ca")
    certificate, key = ca.issue("first")
    config = {"tls_certificate": str(certificate), "tls_private_key": str(key)}
    async with running(tmp_path, config) as daemon:
        context = ca.client_context()
        head, subject = await https_get(daemon.port, context)
        assert head.startswith("HTTP/1.1 200") and subject == "first"
        assert "Strict-Transport-Security: max-age=31536000" in head
        alice, _ = await wss_join(daemon.port, context, "alice")
        with pytest.raises(ConnectionError):
            await raw_get(daemon, "/")  # plain HTTP: closed, no answer
        old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        old.load_verify_locations(ca.certificate)
        with warnings.catch_warnings():  # TLS 1.1 is deprecated: that is the point
            warnings.simplefilter("ignore", DeprecationWarning)
            old.minimum_version = ssl.TLSVersion.TLSv1
            old.maximum_version = ssl.TLSVersion.TLSv1_1
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await https_get(daemon.port, old)
        await alice.send(json.dumps({"type": "say", "text": "still fine"}))
        assert (await recv_type(alice, "message"))["text"] == "still fine"
        await alice.close()


async def test_reload_swaps_the_certificate_and_keeps_connections(tmp_path: Path) -> None:
    """After a reload new handshakes get the new certificate; a bad one keeps the old."""
    ca = TestCA(tmp_path / "ca")
    first, first_key = ca.issue("first")
    second, second_key = ca.issue("second")
    live, live_key = tmp_path / "live.pem", tmp_path / "live.key"
    live.write_bytes(first.read_bytes())
    live_key.write_bytes(first_key.read_bytes())
    config = {"tls_certificate": str(live), "tls_private_key": str(live_key), "hsts_max_age": 0}
    async with running(tmp_path, config) as daemon:
        context = ca.client_context()
        alice, _ = await wss_join(daemon.port, context, "alice")
        live.write_bytes(second.read_bytes())
        live_key.write_bytes(second_key.read_bytes())
        settings = settings_for(tmp_path, config)
        daemon.daemon._reload_tls(settings)
        head, subject = await https_get(daemon.port, context)
        assert subject == "second" and "Strict-Transport-Security" not in head
        await alice.send(json.dumps({"type": "say", "text": "across the swap"}))
        assert (await recv_type(alice, "message"))["text"] == "across the swap"
        live_key.write_bytes(first_key.read_bytes())  # mismatched with the certificate
        daemon.daemon._reload_tls(settings)
        assert "keeping the running certificate: tls_private_key" in daemon.log()
        _, subject = await https_get(daemon.port, context)
        assert subject == "second"
        await alice.close()


async def test_sighup_swaps_the_certificate_for_new_connections_only(tmp_path: Path) -> None:
    """A real SIGHUP: RELOADING=1 then READY=1, new handshakes see the new certificate,
    and a wss client connected before it keeps chatting on the old session."""
    ca = TestCA(tmp_path / "ca")
    first, first_key = ca.issue("first")
    second, second_key = ca.issue("second")
    live, live_key = tmp_path / "live.pem", tmp_path / "live.key"
    live.write_bytes(first.read_bytes())
    live_key.write_bytes(first_key.read_bytes())
    config = {"tls_certificate": str(live), "tls_private_key": str(live_key)}
    (tmp_path / "daemon").mkdir()
    with Process(tmp_path / "daemon", config) as daemon:
        assert daemon.notify is not None
        context = ca.client_context()
        _, subject = await https_get(daemon.port, context)
        assert subject == "first"
        alice, _ = await wss_join(daemon.port, context, "alice")
        # As certbot renews: the new pair replaces the files, then the reload.
        live.write_bytes(second.read_bytes())
        live_key.write_bytes(second_key.read_bytes())
        daemon.signal(signal.SIGHUP)
        daemon.notify.wait_for("RELOADING", "1")
        daemon.notify.wait_for("READY", "1")
        assert "certificate reloaded from" in daemon.log()
        _, subject = await https_get(daemon.port, context)
        assert subject == "second"
        bob, _ = await wss_join(daemon.port, context, "bob")
        # The socket alice holds was never re-handshaken: it still shows the first one.
        peer = alice.transport.get_extra_info("peercert")
        assert dict(item[0] for item in peer["subject"])["commonName"] == "first"
        await alice.send(json.dumps({"type": "say", "text": "across the SIGHUP"}))
        assert (await recv_type(alice, "message"))["text"] == "across the SIGHUP"
        assert (await recv_type(bob, "message"))["text"] == "across the SIGHUP"
        await alice.close()
        await bob.close()


async def test_missing_or_mismatched_key_at_start_is_exit_78(tmp_path: Path) -> None:
    """A key that cannot be used at start: one line naming the key, exit 78."""
    ca = TestCA(tmp_path / "ca")
    certificate, _ = ca.issue("one")
    _, other_key = ca.issue("two")
    for key, says in ((tmp_path / "none.key", "cannot read"), (other_key, "does not match")):
        config = {"tls_certificate": str(certificate), "tls_private_key": str(key)}
        daemon = Daemon(settings_for(tmp_path, config), None, SystemdEnvironment())
        assert await daemon.run() == 78, says


def test_tls_settings_go_together(tmp_path: Path) -> None:
    """A certificate without a key is a config error naming the missing key."""
    config = tmp_path / "pichat.toml"
    config.write_text('tls_certificate = "/etc/ssl/chat.pem"\n')
    with pytest.raises(ConfigError) as caught:
        load(config)
    assert any("tls_private_key" in problem for problem in caught.value.problems)
