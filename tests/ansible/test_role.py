"""The role provisions a booted Debian 13 over SSH: install, configure, reload, restart.

One target per module, provisioned once by the ``converged`` fixture; the tests then
run in file order from that converged state, the ones that change it last.
"""

from __future__ import annotations

import asyncio
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ansible.conftest import http_get, join, record_timing, say_and_hear, upgrade_status
from tests.ansible.target import PlaybookRun, Target, provision_target
from tests.system import Container, build_deb, free_port

pytestmark = pytest.mark.system

CONFIG = "/etc/pichat/pichat.toml"
# What a page on a rebinding attacker's name sends as Host.
FOREIGN = "attacker.example"

# Ansible's platform facts, computed the way its collector does on the target.
_NAMES_SCRIPT = """
import platform, socket
node = platform.node()
print(node.split(".")[0]); print(node); print(socket.getfqdn())
"""


class Converged:
    """The target after its first provisioning run, and the variables it used."""

    def __init__(self, target: Target, variables: dict[str, Any], first: PlaybookRun) -> None:
        self.target = target
        self.variables = variables
        self.first = first

    @property
    def port(self) -> int:
        """pichat's port as last provisioned."""
        return int(self.variables["pichat_port"])

    def main_pid(self) -> str:
        """pichat's main PID: unchanged by a reload, new after a restart."""
        return self.target.container.show("pichat.service", "MainPID")

    def config(self) -> dict[str, Any]:
        """The rendered /etc/pichat/pichat.toml, parsed."""
        return tomllib.loads(self.target.container.read(CONFIG))


def fact_names(container: Container) -> tuple[str, set[str]]:
    """The target's short hostname, and the names the role should take from its facts.

    Read in the target the way Ansible's platform facts are (``ansible_hostname``,
    ``ansible_nodename``, ``ansible_fqdn``), plus ``<hostname>.local`` and localhost.
    """
    short, node, fqdn = container.run(["python3", "-c", _NAMES_SCRIPT]).stdout.split()
    names = {short, node, fqdn, f"{short}.local", "localhost"}
    return short.lower(), {name.lower().rstrip(".") for name in names}


@pytest.fixture(scope="module")
def converged(deb: Path) -> Iterator[Converged]:
    """A plain (non-Pi) Debian 13 target provisioned once by ansible/site.yml."""
    with provision_target(deb) as target:
        variables: dict[str, Any] = {
            "pichat_host": "127.0.0.1",
            "pichat_port": free_port(),
            "pichat_title": "Provisioned",
            # Not the defaults, so the test sees that the role templates them.
            "pichat_join_timeout": 7.5,
            "pichat_history_replay_bytes": 131072,
            "pichat_sites": [
                {"server_names": ["club.test"], "title": "Club", "room": "club"},
            ],
        }
        first = target.playbook(variables).check()
        record_timing("first provisioning run (plain target)", first.seconds)
        yield Converged(target, variables, first)


def test_first_run_installs_and_starts_pichat(converged: Converged) -> None:
    """The first run installs the package with apt and leaves pichat enabled and active."""
    container = converged.target.container
    assert container.run(["dpkg-query", "-W", "-f=${Status}", "pichat"]).stdout == (
        "install ok installed"
    )
    assert container.show("pichat.service", "ActiveState") == "active"
    assert container.show("pichat.service", "UnitFileState") == "enabled"
    status, health = http_get(f"http://127.0.0.1:{converged.port}/healthz")
    assert (status, health["status"]) == (200, "ok")


def test_rendered_config_carries_the_variables(converged: Converged) -> None:
    """The templated pichat.toml holds the port, the title and the extra site, per Host."""
    config = converged.target.container.read(CONFIG)
    assert f"port = {converged.port}\n" in config
    _, default_site = http_get(f"http://127.0.0.1:{converged.port}/site.json")
    _, club = http_get(f"http://127.0.0.1:{converged.port}/site.json", host="club.test")
    assert (default_site["title"], default_site["room"]) == ("Provisioned", "lobby")
    assert (club["title"], club["room"]) == ("Club", "club")


def test_rendered_config_names_the_hosts_own_names(converged: Converged) -> None:
    """server_names holds the target's names from its facts, each once, and no site's name."""
    _, expected = fact_names(converged.target.container)
    config = converged.config()
    names = config["server_names"]
    assert len(names) == len(set(names)), names
    assert set(names) == expected
    assert "club.test" not in names
    assert (config["join_timeout"], config["history_replay_bytes"]) == (7.5, 131072)


async def test_foreign_host_is_refused_own_names_and_address_admitted(
    converged: Converged,
) -> None:
    """A rebinding page's Host gets 421; the target's names, a site's name and its address get in.

    The page itself is still served for the foreign Host: only the chat is refused.
    """
    port = converged.port
    hostname, _ = fact_names(converged.target.container)
    status, _ = http_get(f"http://127.0.0.1:{port}/site.json", host=f"{FOREIGN}:{port}")
    assert status == 200
    assert await upgrade_status(port, hostname) == 101
    assert await upgrade_status(port, f"{hostname}.local") == 101
    assert await upgrade_status(port, "localhost") == 101
    assert await upgrade_status(port, "club.test") == 101
    assert await upgrade_status(port, "127.0.0.1") == 101
    assert await upgrade_status(port, FOREIGN) == 421


async def test_chat_round_trip_on_the_configured_port(converged: Converged) -> None:
    """A client on pichat_port joins the provisioned room and hears its own message back."""
    ws, welcome = await join(converged.port, "alice")
    async with ws:
        assert welcome["title"] == "Provisioned"
        message = await say_and_hear(ws, "hello from the test")
    assert message["name"] == "alice"


def test_power_settings_are_skipped_off_a_pi(converged: Converged) -> None:
    """A host that is not a Raspberry Pi gets no config.txt block and keeps its services."""
    container = converged.target.container
    assert container.run(["test", "-e", "/boot/firmware/config.txt"], check=False).returncode
    assert container.run(["test", "-e", "/run/reboot-required"], check=False).returncode
    assert container.show("triggerhappy.service", "UnitFileState") == "enabled"


def test_tls_and_backup_stay_off_by_default(converged: Converged) -> None:
    """Without the TLS and backup variables: no credential drop-in, plain HTTP, timer off."""
    container = converged.target.container
    assert (
        container.run(
            ["test", "-e", "/etc/systemd/system/pichat.service.d/tls.conf"], check=False
        ).returncode
        == 1
    )
    assert "tls_certificate" not in converged.config()
    assert container.show("pichat-backup.timer", "UnitFileState") == "disabled"
    assert container.show("pichat-backup.timer", "ActiveState") == "inactive"
    assert "BACKUP_KEEP=7" in container.show("pichat-backup.service", "Environment")


def test_second_run_changes_nothing(converged: Converged) -> None:
    """Running the playbook again on the converged host reports changed=0."""
    run = converged.target.playbook(converged.variables).check()
    assert run.recap()["changed"] == 0, run.changed_tasks()


def test_check_diff_on_converged_host_reports_no_change(converged: Converged) -> None:
    """--check --diff on the converged host predicts no change."""
    run = converged.target.playbook(converged.variables, "--check", "--diff").check()
    assert run.recap()["changed"] == 0, run.output


def test_bad_variable_fails_before_any_change(converged: Converged) -> None:
    """A variable of the wrong type stops the play at the argument spec, naming it."""
    before = converged.target.container.read(CONFIG)
    run = converged.target.playbook({**converged.variables, "pichat_port": "many"})
    assert run.returncode != 0
    assert "pichat_port" in run.output
    assert run.recap()["changed"] == 0
    assert converged.target.container.read(CONFIG) == before


def test_config_rejected_by_check_config_is_not_installed(converged: Converged) -> None:
    """A value pichat check-config refuses fails the template and keeps the old file."""
    before = converged.target.container.read(CONFIG)
    pid = converged.main_pid()
    run = converged.target.playbook({**converged.variables, "pichat_room": "no spaces allowed"})
    assert run.returncode != 0
    assert "check-config" in run.output or "validat" in run.output, run.output
    assert converged.target.container.read(CONFIG) == before
    assert converged.main_pid() == pid


def test_server_name_pichat_would_refuse_fails_before_any_change(converged: Converged) -> None:
    """An extra name with an underscore stops the play at the role's own check, naming it."""
    before = converged.target.container.read(CONFIG)
    variables = {**converged.variables, "pichat_server_names_extra": ["my_pi"]}
    run = converged.target.playbook(variables)
    assert run.returncode != 0
    assert "pichat_server_names: my_pi: not a host name" in run.output, run.output
    assert run.recap()["changed"] == 0
    assert converged.target.container.read(CONFIG) == before


async def test_extra_names_alone_when_the_facts_are_off(converged: Converged) -> None:
    """With pichat_server_names_auto off only the extra names count, as pichat spells them.

    A reload applies the list: the extra name is admitted, the hostname now refused.
    """
    variables = {
        **converged.variables,
        "pichat_server_names_auto": False,
        "pichat_server_names_extra": ["Chat.Example.ORG."],
    }
    run = converged.target.playbook(variables, "--tags", "pichat_config").check()
    assert "Reload pichat" in run.changed_tasks(), run.output
    assert converged.config()["server_names"] == ["chat.example.org"]
    hostname, _ = fact_names(converged.target.container)
    assert await upgrade_status(converged.port, "chat.example.org") == 101
    assert await upgrade_status(converged.port, hostname) == 421


async def test_no_server_names_answer_any_host(converged: Converged) -> None:
    """Facts off and no extra names write server_names = [], which admits any Host."""
    variables = {**converged.variables, "pichat_server_names_auto": False}
    converged.target.playbook(variables, "--tags", "pichat_config").check()
    assert converged.config()["server_names"] == []
    assert await upgrade_status(converged.port, FOREIGN) == 101
    # Back to the converged list for the tests after this one.
    converged.target.playbook(converged.variables, "--tags", "pichat_config").check()
    _, expected = fact_names(converged.target.container)
    assert set(converged.config()["server_names"]) == expected


async def test_title_change_reloads_without_dropping_a_client(converged: Converged) -> None:
    """A new site title is applied by a reload: same process, the connected client stays."""
    pid = converged.main_pid()
    ws, _ = await join(converged.port, "bob")
    async with ws:
        variables = {**converged.variables, "pichat_title": "Renamed by Ansible"}
        # In a thread, so this event loop keeps answering the server's pings meanwhile.
        run = (await asyncio.to_thread(converged.target.playbook, variables)).check()
        assert run.recap()["changed"] > 0
        assert "Reload pichat" in run.changed_tasks(), run.output
        assert "Restart pichat" not in run.changed_tasks()
        message = await say_and_hear(ws, "still here after the reload")
        assert message["name"] == "bob"
    converged.variables = variables
    assert converged.main_pid() == pid
    _, site = http_get(f"http://127.0.0.1:{converged.port}/site.json")
    assert site["title"] == "Renamed by Ansible"


def test_port_change_restarts_on_the_new_port(converged: Converged) -> None:
    """A new pichat_port restarts the service, which then answers there and not on the old."""
    old_port, pid = converged.port, converged.main_pid()
    variables = {**converged.variables, "pichat_port": free_port()}
    run = converged.target.playbook(variables).check()
    assert "Restart pichat" in run.changed_tasks(), run.output
    converged.variables = variables
    assert converged.main_pid() != pid
    status, health = http_get(f"http://127.0.0.1:{converged.port}/healthz")
    assert (status, health["status"]) == (200, "ok")
    with pytest.raises(OSError):
        http_get(f"http://127.0.0.1:{old_port}/healthz")


def test_newer_deb_upgrades_and_runs(converged: Converged) -> None:
    """Re-running with a newer .deb upgrades the package and restarts pichat on the new code."""
    container = converged.target.container
    current = container.run(["dpkg-query", "-W", "-f=${Version}", "pichat"]).stdout
    newer = build_deb(version=f"{current}+upgrade1")
    variables = {**converged.variables, "pichat_deb_path": str(newer)}
    # Only the install tasks (and the restart they notify): the rest is tested above.
    run = converged.target.playbook(variables, "--tags", "pichat_install").check()
    assert "Install the package and its dependencies with apt." in run.changed_tasks()
    version = container.run(["dpkg-query", "-W", "-f=${Version}", "pichat"]).stdout
    assert version == f"{current}+upgrade1"
    _, health = http_get(f"http://127.0.0.1:{converged.port}/healthz")
    assert health["version"] == version
