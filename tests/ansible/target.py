"""A provisioning target for the Ansible role: a booted Debian 13 with sshd on loopback.

The target is a :mod:`tests.system` container (systemd-nspawn on a throw-away overlay
of a cached root) sharing the host's network, with an SSH server on a free loopback
port that accepts a key made for the test. ``ansible-playbook ansible/site.yml`` then
provisions it over SSH exactly as it would a Pi on the LAN.

Two adjustments keep the shared network clean, without changing what the role does:

- ``/usr/sbin/policy-rc.d`` (Debian's hook for exactly this) tells maintainer scripts
  not to start services, so installing the .deb does not bind pichat's packaged
  port 3000 on the host; the role starts pichat on the port the test picked.
- sshd listens on 127.0.0.1 only, and pichat is bound to 127.0.0.1 by the tests.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.system import BOOT, TIMEOUT, Container, RootSpec, boot, free_port
from tests.system.roots import DEBIAN_PATH, REPO

__all__ = ["TARGET", "PlaybookRun", "Target", "ansible_env", "provision_target"]

ANSIBLE_DIR = REPO / "ansible"
PLAYBOOK = ANSIBLE_DIR / "site.yml"
VENV_BIN = Path(sys.executable).parent

# What a Raspberry Pi OS Lite image brings that the role relies on (sshd, Python,
# python3-apt for the apt module), plus triggerhappy: one of the services the role
# turns off on a Pi, small and network-free, so the power tests stop a real unit; and
# nftables (its service is off until enabled) for the firewall test's offline target.
TARGET = RootSpec(
    "ansible-target",
    parent=BOOT,
    packages=("openssh-server", "python3", "python3-apt", "triggerhappy", "nftables"),
)

_RECAP = re.compile(
    r"^(?P<host>\S+)\s*:\s*ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+"
    r"unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)",
    re.MULTILINE,
)
# "TASK [pichat : Name.] ***" or "RUNNING HANDLER [pichat : Name] ***".
_HEADER = re.compile(r"^(?:TASK|RUNNING HANDLER) \[(?:[\w.]+ : )?(?P<task>.*)\] \**$")


@dataclass
class PlaybookRun:
    """The outcome of one ``ansible-playbook`` run against one host."""

    returncode: int
    output: str
    seconds: float

    def recap(self) -> dict[str, int]:
        """The PLAY RECAP counters of the host (``ok``, ``changed``, ...)."""
        match = _RECAP.search(self.output)
        assert match, f"no PLAY RECAP in the output:\n{self.output}"
        return {key: int(value) for key, value in match.groupdict().items() if key != "host"}

    def changed_tasks(self) -> list[str]:
        """Names of the tasks and handlers (role prefix dropped) that reported ``changed``."""
        changed: list[str] = []
        task = ""
        for line in self.output.splitlines():
            header = _HEADER.match(line)
            if header:
                task = header["task"]
            elif line.startswith("changed: ") and task not in changed:
                changed.append(task)
        return changed

    def check(self) -> PlaybookRun:
        """Fail the test with the whole output unless the run succeeded."""
        assert self.returncode == 0, f"ansible-playbook exited {self.returncode}:\n{self.output}"
        return self


def ansible_env(home: Path) -> dict[str, str]:
    """The environment for Ansible tools: offline, no colour, state kept under ``home``."""
    return {
        "PATH": f"{VENV_BIN}:{DEBIAN_PATH}",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"),
        "ANSIBLE_HOME": str(home / ".ansible"),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(home / "cp"),
        "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        # Nothing may leave the machine: a stray download attempt fails at once.
        "https_proxy": "http://127.0.0.1:9",
        "http_proxy": "http://127.0.0.1:9",
        "no_proxy": "127.0.0.1,localhost",
    }


class Target:
    """A booted container reachable over SSH, and the means to run the playbook on it.

    Attributes:
        container: the booted system (run commands, read files, query systemd).
        ssh_port: the loopback port of its sshd.
        workdir: a host directory for the key, the inventory and Ansible's state.
        groups: the inventory groups it is in (``pichat``, and ``pichat_redis`` for the
            Redis play of ``site.yml``).
    """

    def __init__(
        self,
        container: Container,
        ssh_port: int | None,
        workdir: Path,
        deb: Path,
        groups: Sequence[str] = ("pichat",),
    ) -> None:
        self.container = container
        self.ssh_port = ssh_port
        self.workdir = workdir
        self.deb = deb
        self.groups = tuple(groups)
        self.inventory = workdir / "inventory.yml"
        self._write_inventory()

    def _write_inventory(self) -> None:
        host: dict[str, Any] = {
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(self.workdir / "id_ed25519"),
            "ansible_python_interpreter": "/usr/bin/python3",
        }
        if self.ssh_port is not None:
            host.update(ansible_host="127.0.0.1", ansible_port=self.ssh_port)
        else:
            # No network path into a private network namespace: ssh speaks to an sshd
            # started in the container's namespaces on the pipe (inetd mode) instead.
            host.update(
                ansible_host="target",
                ansible_ssh_common_args=(
                    f"-o ProxyCommand='nsenter -t {self.container.leader} -a /usr/sbin/sshd -i'"
                ),
            )
        children = {group: {"hosts": {"target": host}} for group in self.groups}
        inventory = {"all": {"children": children}}
        self.inventory.write_text(json.dumps(inventory, indent=2))

    def playbook(
        self,
        variables: Mapping[str, Any],
        *args: str,
        timeout: float = 20 * TIMEOUT,
    ) -> PlaybookRun:
        """Run ``ansible/site.yml`` on the target with ``variables`` as extra vars.

        Args:
            variables: extra variables (JSON), e.g. ``{"pichat_port": 4242}``.
            args: more ``ansible-playbook`` arguments, e.g. ``"--check", "--diff"``.
            timeout: seconds before the run is killed.
        """
        extra = self.workdir / "extra-vars.json"
        extra.write_text(json.dumps({"pichat_deb_path": str(self.deb), **variables}))
        started = time.monotonic()
        result = subprocess.run(
            [
                str(VENV_BIN / "ansible-playbook"),
                "-i",
                str(self.inventory),
                "-e",
                f"@{extra}",
                *args,
                str(PLAYBOOK),
            ],
            cwd=self.workdir,
            env=ansible_env(self.workdir),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return PlaybookRun(
            result.returncode, result.stdout + result.stderr, time.monotonic() - started
        )


def _authorize_key(container: Container, workdir: Path) -> None:
    """Make a key pair in ``workdir`` and let root in with it."""
    key = workdir / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "pichat-test", "-f", str(key)],
        check=True,
        env={"PATH": DEBIAN_PATH},
    )
    container.write("/root/.ssh/authorized_keys", (workdir / "id_ed25519.pub").read_text(), 0o600)


def _start_sshd(container: Container) -> int:
    """Start sshd on a free loopback port; return the port."""
    port = free_port()
    container.write(
        "/etc/ssh/sshd_config.d/pichat-test.conf",
        f"Port {port}\nListenAddress 127.0.0.1\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nUseDNS no\n",
    )
    container.systemctl("restart", "ssh.service")
    # A listening socket (state 0A) on 127.0.0.1:port in the kernel's table.
    container.wait_for(
        f"grep -q '0100007F:{port:04X} 00000000:0000 0A' /proc/net/tcp",
        what=f"sshd on port {port}",
    )
    return port


@contextlib.contextmanager
def provision_target(
    deb: Path,
    *,
    files: Mapping[str, str] | None = None,
    private_network: bool = False,
    groups: Sequence[str] = ("pichat",),
) -> Iterator[Target]:
    """Boot a target, let the test's key in over SSH, and yield it; all is gone afterwards.

    Args:
        deb: the pichat .deb the playbook installs (``pichat_deb_path``).
        files: files to create in the target before it is provisioned, ``{path: text}``.
        private_network: boot in a network namespace of its own (only loopback), for
            tests that change the firewall; SSH then goes through ``sshd -i`` on a pipe,
            and apt cannot reach a mirror (the root's lists are declared fresh, so the
            role installs from the root's packages and apt's cache).
        groups: the inventory groups the target is in (``pichat_redis`` makes
            ``site.yml`` install the Redis server there too).
    """
    workdir = Path(tempfile.mkdtemp(prefix="pichat-ansible-"))
    try:
        (workdir / "tmp").mkdir()
        with boot(TARGET, private_network=private_network) as container:
            # Debian's policy-rc.d: 101 = "action forbidden", for maintainer scripts only.
            container.write("/usr/sbin/policy-rc.d", "#!/bin/sh\nexit 101\n", 0o755)
            for path, text in (files or {}).items():
                container.write(path, text)
            _authorize_key(container, workdir)
            try:
                if private_network:
                    container.run(["touch", "/var/lib/apt/periodic/update-success-stamp"])
                    yield Target(container, None, workdir, deb, groups)
                else:
                    yield Target(container, _start_sshd(container), workdir, deb, groups)
            finally:
                _close_ssh_masters(workdir / "cp")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _close_ssh_masters(directory: Path) -> None:
    """End the SSH connections Ansible keeps open (ControlPersist) before the halt.

    Their login sessions would otherwise be part of the container's shutdown, and
    the ssh processes on the host would linger until the connection breaks.
    """
    for socket in directory.glob("*"):
        subprocess.run(
            ["ssh", "-o", f"ControlPath={socket}", "-O", "exit", "target"],
            env={"PATH": DEBIAN_PATH},
            capture_output=True,
            timeout=TIMEOUT,
            check=False,
        )
