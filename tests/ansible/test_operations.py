"""The role's TLS and nightly-backup variables on a booted Debian 13, provisioned over SSH.

One target for the module, first provisioned with TLS from PEM content and the backup
timer on; the tests then run in file order, switching to TLS files named by path on
the host and finally turning both off.
"""

from __future__ import annotations

import json
import socket
import ssl
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ansible.conftest import http_get, record_timing
from tests.ansible.target import Target, provision_target
from tests.system import TIMEOUT, free_port
from tests.tls import TestCA

pytestmark = pytest.mark.system

CONFIG = "/etc/pichat/pichat.toml"
TLS_DROP_IN = "/etc/systemd/system/pichat.service.d/tls.conf"
KEEP_DROP_IN = "/etc/systemd/system/pichat-backup.service.d/ansible.conf"
TIMER = "pichat-backup.timer"


class Provisioned:
    """The target, its test CA, and the variables it was last provisioned with."""

    def __init__(self, target: Target, ca: TestCA, variables: dict[str, Any]) -> None:
        self.target = target
        self.ca = ca
        self.variables = variables

    @property
    def port(self) -> int:
        """pichat's port."""
        return int(self.variables["pichat_port"])

    def config(self) -> dict[str, Any]:
        """The rendered pichat.toml, parsed."""
        return tomllib.loads(self.target.container.read(CONFIG))

    def served_name(self) -> str:
        """The CN of the certificate a new handshake gets, verified against the test CA."""
        context = self.ca.client_context()
        with socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                subject = dict(item[0] for item in tls.getpeercert()["subject"])
        return str(subject["commonName"])

    def https_health(self) -> Any:
        """``GET https://127.0.0.1:PORT/healthz``, verified against the test CA."""
        url = f"https://127.0.0.1:{self.port}/healthz"
        context = self.ca.client_context()
        with urllib.request.urlopen(url, timeout=TIMEOUT, context=context) as response:
            return json.load(response)


@pytest.fixture(scope="module")
def provisioned(deb: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provisioned]:
    """A target provisioned with the pair as PEM content and the nightly backup on (keep 3)."""
    ca = TestCA(tmp_path_factory.mktemp("ca"))
    certificate, key = ca.issue("from-content")
    with provision_target(deb) as target:
        variables: dict[str, Any] = {
            "pichat_host": "127.0.0.1",
            "pichat_port": free_port(),
            "pichat_tls_certificate": certificate.read_text(),
            "pichat_tls_private_key": key.read_text(),
            "pichat_backup_enabled": True,
            "pichat_backup_keep": 3,
        }
        run = target.playbook(variables).check()
        record_timing("first provisioning run (TLS and backup)", run.seconds)
        assert "BEGIN PRIVATE KEY" not in run.output  # the key is never logged
        yield Provisioned(target, ca, variables)


def test_tls_from_content_is_served_through_a_credential(provisioned: Provisioned) -> None:
    """The copied pair is root's alone; the drop-in hands it over; https verifies."""
    container = provisioned.target.container
    listing = container.run("stat -c '%a %U %n' /etc/pichat/tls /etc/pichat/tls/*").stdout
    assert listing.splitlines() == [
        "700 root /etc/pichat/tls",
        "600 root /etc/pichat/tls/certificate.pem",
        "600 root /etc/pichat/tls/private-key.pem",
    ]
    drop_in = container.read(TLS_DROP_IN)
    assert "LoadCredential=tls-private-key.pem:/etc/pichat/tls/private-key.pem" in drop_in
    config = provisioned.config()
    assert config["tls_private_key"] == "/run/credentials/pichat.service/tls-private-key.pem"
    assert config["tls_certificate"] == "/run/credentials/pichat.service/tls-certificate.pem"
    assert provisioned.https_health()["status"] == "ok"
    assert provisioned.served_name() == "from-content"
    with pytest.raises(OSError):  # plain HTTP is not spoken any more (the server hangs up)
        http_get(f"http://127.0.0.1:{provisioned.port}/healthz")


def test_backup_timer_is_on_and_keeps_what_was_asked(provisioned: Provisioned) -> None:
    """The timer is enabled and waiting; the service, started, writes one copy and keeps 3."""
    container = provisioned.target.container
    assert container.show(TIMER, "UnitFileState") == "enabled"
    assert container.show(TIMER, "ActiveState") == "active"
    assert "BACKUP_KEEP=3" in container.show("pichat-backup.service", "Environment")
    for _ in range(4):
        container.systemctl("start", "pichat-backup.service")
    names = container.run(["ls", "/var/backups/pichat"]).stdout.split()
    assert len(names) == 3 and all(name.startswith("pichat-") for name in names), names


def test_second_run_changes_nothing(provisioned: Provisioned) -> None:
    """Re-running with the same TLS content and backup settings reports changed=0."""
    run = provisioned.target.playbook(provisioned.variables).check()
    assert run.recap()["changed"] == 0, run.changed_tasks()


def test_half_a_pair_fails_before_any_change(provisioned: Provisioned) -> None:
    """A certificate without its key stops the play, naming both variables."""
    before = provisioned.target.container.read(CONFIG)
    variables = {**provisioned.variables, "pichat_tls_private_key": ""}
    run = provisioned.target.playbook(variables)
    assert run.returncode != 0
    assert "pichat_tls_certificate and pichat_tls_private_key go together" in run.output
    assert run.recap()["changed"] == 0
    assert provisioned.target.container.read(CONFIG) == before


def test_a_missing_path_on_the_host_fails_before_any_change(provisioned: Provisioned) -> None:
    """A key path that does not exist on the host stops the play, naming the path."""
    before = provisioned.target.container.read(CONFIG)
    variables = {
        **provisioned.variables,
        "pichat_tls_certificate": "/etc/nowhere/chat.pem",
        "pichat_tls_private_key": "/etc/nowhere/chat.key",
    }
    run = provisioned.target.playbook(variables)
    assert run.returncode != 0
    assert "pichat_tls_certificate: no file /etc/nowhere/chat.pem on the host" in run.output
    assert run.recap()["changed"] == 0
    assert provisioned.target.container.read(CONFIG) == before
    assert provisioned.served_name() == "from-content"


def test_paths_on_the_host_replace_the_copies_and_restart(provisioned: Provisioned) -> None:
    """Files already on the host (root-only key): drop-in names them, copies go, new pair served."""
    container = provisioned.target.container
    certificate, key = provisioned.ca.issue("by-path")
    container.write("/etc/letsencrypt/live/chat/fullchain.pem", certificate.read_bytes())
    container.write("/etc/letsencrypt/live/chat/privkey.pem", key.read_bytes(), mode=0o600)
    variables = {
        **provisioned.variables,
        "pichat_tls_certificate": "/etc/letsencrypt/live/chat/fullchain.pem",
        "pichat_tls_private_key": "/etc/letsencrypt/live/chat/privkey.pem",
    }
    pid = container.show("pichat.service", "MainPID")
    run = provisioned.target.playbook(variables).check()
    provisioned.variables = variables
    assert "Restart pichat" in run.changed_tasks(), run.output
    assert "Reload pichat" not in run.changed_tasks()
    assert container.show("pichat.service", "MainPID") != pid
    assert container.run(["test", "-e", "/etc/pichat/tls"], check=False).returncode == 1
    assert "tls-private-key.pem:/etc/letsencrypt/live/chat/privkey.pem" in container.read(
        TLS_DROP_IN
    )
    assert provisioned.served_name() == "by-path"
    again = provisioned.target.playbook(variables).check()
    assert again.recap()["changed"] == 0, again.changed_tasks()


def test_turning_both_off_serves_plain_http_and_stops_the_timer(
    provisioned: Provisioned,
) -> None:
    """TLS and backup off: drop-in gone, plain HTTP again, timer disabled; copies are left."""
    container = provisioned.target.container
    variables = {
        **provisioned.variables,
        "pichat_tls_certificate": "",
        "pichat_tls_private_key": "",
        "pichat_backup_enabled": False,
    }
    provisioned.target.playbook(variables).check()
    provisioned.variables = variables
    assert container.run(["test", "-e", TLS_DROP_IN], check=False).returncode == 1
    assert "tls_certificate" not in provisioned.config()
    status, health = http_get(f"http://127.0.0.1:{provisioned.port}/healthz")
    assert (status, health["status"]) == (200, "ok")
    assert container.show(TIMER, "UnitFileState") == "disabled"
    assert container.show(TIMER, "ActiveState") == "inactive"
    assert len(container.run(["ls", "/var/backups/pichat"]).stdout.split()) == 3
    with pytest.raises(ssl.SSLError):
        provisioned.served_name()
