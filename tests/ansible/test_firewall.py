"""The optional nftables rule set, on a target in a network namespace of its own.

The rule set must never touch the host's network, so this target boots with a private
network namespace; a veth pair joins it to a second namespace the test makes, from
which the test probes: before provisioning a listener on a port the role does not
open answers, afterwards only SSH and the chat port do.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ansible.target import Target, provision_target
from tests.system import TIMEOUT
from tests.system.roots import DEBIAN_PATH

pytestmark = pytest.mark.system

# Fixed ports are safe here: nothing else lives in the target's network namespace.
CHAT_PORT = 3100
OTHER_PORT = 3200
TARGET_ADDRESS = "10.87.0.2"
PROBE_ADDRESS = "10.87.0.1"

_PROBE = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()
except OSError as exc:
    print(type(exc).__name__)
    sys.exit(1)
"""


def _ip(pid: int, *args: str) -> None:
    """``ip ARGS`` in the network namespace of ``pid`` (the host's ip binary)."""
    subprocess.run(
        ["nsenter", "-t", str(pid), "-n", "ip", *args],
        check=True,
        env={"PATH": DEBIAN_PATH},
        capture_output=True,
    )


class Probe:
    """A network namespace of the test's own, wired to the target by a veth pair."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def connects(self, port: int, timeout: float = 2.0) -> bool:
        """Whether a TCP connection to the target's port is accepted within ``timeout``."""
        result = subprocess.run(
            ["nsenter", "-t", str(self.pid), "-n", sys.executable, "-c", _PROBE]
            + [TARGET_ADDRESS, str(port), str(timeout)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        return result.returncode == 0


@contextlib.contextmanager
def probe_namespace(target: Target) -> Iterator[Probe]:
    """A fresh network namespace with a veth link to the target's private one."""
    # unshare execs the shell in the new namespace, so the line proves it is there.
    holder = subprocess.Popen(
        ["unshare", "--net", "sh", "-c", "echo ready; exec sleep infinity"],
        stdout=subprocess.PIPE,
        text=True,
        env={"PATH": DEBIAN_PATH},
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "ready\n"
        own = os.readlink("/proc/self/ns/net")
        assert os.readlink(f"/proc/{holder.pid}/ns/net") != own, "probe shares our network"
        assert os.readlink(f"/proc/{target.container.leader}/ns/net") != own
        leader = target.container.leader
        # Created inside the two namespaces: nothing appears in the host's.
        _ip(holder.pid, "link", "add", "probe0", "type", "veth", "peer", "name", "lan0",
            "netns", str(leader))  # fmt: skip
        _ip(holder.pid, "addr", "add", f"{PROBE_ADDRESS}/24", "dev", "probe0")
        _ip(holder.pid, "link", "set", "probe0", "up")
        _ip(leader, "addr", "add", f"{TARGET_ADDRESS}/24", "dev", "lan0")
        _ip(leader, "link", "set", "lan0", "up")
        yield Probe(holder.pid)
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


def test_firewall_opens_only_ssh_and_the_chat_port(deb: Path) -> None:
    """With pichat_firewall_enabled the chat port and SSH answer, another listener does not."""
    with provision_target(deb, private_network=True) as target, probe_namespace(target) as probe:
        container = target.container
        # A listener the rule set does not list, and sshd on its usual port.
        container.run(
            ["systemd-run", "--unit=other-listener", "python3", "-m", "http.server"]
            + ["--bind", "0.0.0.0", str(OTHER_PORT)]
        )
        container.systemctl("start", "ssh.service")
        container.wait_for(f"python3 -c {_probe_local(OTHER_PORT)}", what="the other listener")
        assert probe.connects(OTHER_PORT), "no path from the probe namespace to the target"

        run = target.playbook({"pichat_port": CHAT_PORT, "pichat_firewall_enabled": True})
        run.check()

        assert container.show("nftables.service", "ActiveState") == "active"
        assert probe.connects(CHAT_PORT)
        assert probe.connects(22)
        assert not probe.connects(OTHER_PORT)
        second = target.playbook({"pichat_port": CHAT_PORT, "pichat_firewall_enabled": True})
        assert second.check().recap()["changed"] == 0, second.changed_tasks()


def _probe_local(port: int) -> str:
    """A shell-quoted Python one-liner that connects to 127.0.0.1:port."""
    return f"'import socket; socket.create_connection((\"127.0.0.1\", {port}), timeout=1)'"
